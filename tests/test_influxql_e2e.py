"""The InfluxQL compatibility suite end to end: the fixture data goes through Kafka, the
ingest and persist agents (small persist thresholds, so part of it is in Parquet files and part
buffered), and every query is asked over influent's HTTP ``/query`` and a real InfluxDB 1.x's."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import produce, start_api, start_worker, unique, wait_for
from tests.influxql_compat.compare import assert_matches
from tests.influxql_compat.loader import HERE
from tests.influxql_compat.queries import QUERIES, Q

pytestmark = pytest.mark.integration
COUNT = "SELECT count(*) FROM /.*/"


@pytest.fixture(scope="module")
def influent_http(kafka_bootstrap, redis_url, tmp_path_factory, influxdb1):
    settings = Settings(state_dir=tmp_path_factory.mktemp("influxql-e2e"),
                        kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                        topic_prefix=unique("q") + ".", partitions=2, default_db="d",
                        http_bind=f"127.0.0.1:{free_port()}", persist_max_rows=10,
                        persist_max_age=3600, tick_interval=1.0)
    worker = start_worker(settings, "w1", free_port())
    api = start_api(settings)
    try:
        for db, name in (("compat", "data.lp"), ("other", "other.lp")):
            lines = (HERE / name).read_bytes().splitlines()
            half = len(lines) // 2  # two messages, two partitions
            asyncio.run(produce(settings, [b"\n".join(lines[:half])], db, partition=0))
            asyncio.run(produce(settings, [b"\n".join(lines[half:])], db, partition=1))
        for db in ("compat", "other"):
            expected = influxdb1.query(COUNT, db)
            wait_for(lambda: _query(settings, {"q": COUNT, "db": db}).json() == expected,
                     timeout=60, what=f"{db} fully ingested")
        yield settings
    finally:
        api.stop()
        worker.stop()


def _query(settings: Settings, params: dict) -> httpx.Response:
    return httpx.get(f"{settings.http_url}/query", params=params, timeout=60)


def test_part_of_the_data_is_persisted(influent_http):
    import redis

    client = redis.Redis.from_url(influent_http.redis_url)
    files = sum(client.hlen(k) for k in client.scan_iter(f"{influent_http.app_id}:db:compat:t:*:files"))
    buffered = sum(client.hlen(k) for k in client.scan_iter(f"{influent_http.app_id}:db:compat:t:*:buf"))
    assert files > 0 and buffered > 0, (files, buffered)


@pytest.mark.parametrize("case", QUERIES, ids=[f"{i:03d}" for i in range(len(QUERIES))])
def test_http_query_matches_influxdb1(case: Q, influxdb1, influent_http):
    params = {"q": case.query, "db": "compat"}
    if case.epoch:
        params["epoch"] = case.epoch
    if case.params is not None:
        params["params"] = json.dumps(case.params)
    _, expected = influxdb1.request("GET", "/query", params)
    assert_matches(case, expected, _query(influent_http, params).content)
