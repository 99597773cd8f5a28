"""Requests the API fuzzer found answered 500: each now gets a 400 that names the reason (one
real API process over the session's Kafka, Redis and S3)."""
from __future__ import annotations

import httpx
import pytest

from tests.api_fuzzing import module_settings
from tests.harness import Proc, start_api, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, redis_url: str, s3_endpoint: str, tmp_path_factory):
    settings = module_settings(kafka_bootstrap, redis_url, s3_endpoint,
                               tmp_path_factory.mktemp("bad-input") / "state")
    proc: Proc = start_api(settings)
    try:
        yield settings.http_url
    finally:
        proc.stop()


CASES = [  # (method, path, query, JSON body, words the 400 must contain)
    ("GET", "/api/v3/configure/database", {"format": "xml"}, None, "invalid format"),
    ("PUT", "/api/v3/configure/database", None, {"db": [1], "retention_period": "1d"}, "'db'"),
    ("PUT", "/api/v3/configure/table", None, {"db": "x", "table": {"a": 1}}, "'table'"),
    ("POST", "/api/v2/delete", None, {"bucket": -634, "start": "1970-01-01T00:00:00Z",
                                      "stop": "2000-01-01T00:00:00Z"}, "'bucket'"),
    ("POST", "/api/v2/delete", {"bucket": "x"}, {"start": "1970-01-01T00:00:00Z",
                                                 "stop": "2000-01-01T00:00:00Z",
                                                 "predicate": 5}, "'predicate'"),
    ("POST", "/query", None, {"q": "SHOW DATABASES", "db": ["x"]}, "'db'"),
    ("POST", "/api/v3/query_sql", None, {"db": "x", "q": "SELECT 1", "params": [1]}, "'params'"),
    ("POST", "/api/v3/query_influxql", None, {"q": "SELECT * FROM cpu", "params": 3},
     "params"),
    ("POST", "/api/v3/configure/table", None, {"db": "x", "table": "t", "tags": 5}, "'tags'"),
    ("POST", "/api/v3/configure/table", None,
     {"db": "x", "table": "t", "fields": [{"name": 7, "type": "int64"}]}, "field name"),
    ("POST", "/api/v3/configure/database", None, {"db": "x", "partition_template": {"tags": 5}},
     "partition_template"),
]


@pytest.mark.parametrize("method,path,query,body,reason", CASES,
                         ids=[f"{c[0]} {c[1]} {sorted((c[3] or c[2]))}" for c in CASES])
def test_a_value_of_the_wrong_type_is_a_400_naming_it(api, method, path, query, body, reason):
    resp = httpx.request(method, f"{api}{path}", params=query, json=body, timeout=60)
    assert resp.status_code == 400, resp.text
    assert reason in resp.text


def test_a_json_query_value_that_is_a_number_or_boolean_is_read_as_text(api):
    """``{"q": true}`` is the query text ``true``: a parse error, not a crash."""
    resp = httpx.post(f"{api}/query", json={"q": True}, timeout=60)
    assert resp.status_code == 400, resp.text
    db = unique("db")
    resp = httpx.post(f"{api}/query", json={"q": f"CREATE DATABASE {db}", "chunked": True,
                                            "chunk_size": 2}, timeout=60)
    assert resp.status_code == 200, resp.text


def test_without_a_token_a_bad_body_is_a_401_first(kafka_bootstrap, redis_url, s3_endpoint,
                                                    tmp_path):
    """Authentication comes before reading the body: no token, 401; a valid one, the 400."""
    settings = module_settings(kafka_bootstrap, redis_url, s3_endpoint, tmp_path / "state",
                               token="bad-input-token")
    proc = start_api(settings)
    try:
        body = {"q": "SHOW DATABASES", "db": ["x"]}
        url = f"{settings.http_url}/query"
        assert httpx.post(url, json=body, timeout=60).status_code == 401
        resp = httpx.post(url, json=body, timeout=60,
                          headers={"Authorization": "Bearer bad-input-token"})
        assert resp.status_code == 400 and "'db'" in resp.text, resp.text
    finally:
        proc.stop()
