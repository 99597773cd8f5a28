"""When a backing service is out of reach the API answers 503 naming it (documented in
/openapi.json), never 500, and keeps serving: a real API process over the session's Kafka and a
Redis of its own that the test stops."""
from __future__ import annotations

import httpx
import pytest

from influent import devstack
from tests.harness import start_api

pytestmark = pytest.mark.integration


def test_redis_down_is_a_503_naming_it_and_the_process_lives_on(settings, tmp_path):
    redis = devstack.start_redis(tmp_path / "redis", tmp_path / "logs", devstack.free_port(),
                                 die_with_parent=True)
    api = None
    try:
        settings = settings.replace(redis_url=redis.endpoint)
        api = start_api(settings)
        url = settings.http_url
        assert httpx.get(f"{url}/api/v3/configure/database", timeout=60).status_code == 200
        devstack.stop(redis, timeout=30)
        for method, path, params in (("GET", "/api/v3/configure/database", None),
                                     ("POST", "/api/v3/write_lp", {"db": "mydb"}),
                                     ("GET", "/api/v3/query_sql", {"db": "mydb", "q": "SELECT 1"})):
            resp = httpx.request(method, f"{url}{path}", params=params, content=b"m v=1", timeout=60)
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert "Redis" in resp.json()["error"]
        assert httpx.get(f"{url}/ready", timeout=60).status_code == 503
        assert httpx.get(f"{url}/health", timeout=60).status_code == 200
        assert api.alive()
    finally:
        if api is not None:
            api.stop()
        devstack.stop(redis, timeout=30)
