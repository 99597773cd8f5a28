"""Continuous queries end to end: TSBS cpu data goes through Kafka into a worker; a continuous
query created over HTTP ``/query`` downsamples it into 5-minute means, run by the worker's
scheduler through ``SELECT ... INTO`` (writes via the writes topic); its output must equal the
same ``SELECT ... GROUP BY time(5m)`` run by hand, before and after more data arrives."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from benchmarks.tsbs import generate_lines
from influent.config import Settings
from influent.devstack import free_port
from tests.harness import produce, start_api, start_worker, unique, wait_for

pytestmark = pytest.mark.integration

FIVE_MIN = 300_000_000_000
SELECT = "SELECT mean(usage_user) AS usage_user, max(usage_system) AS usage_system"
CREATE = (f"CREATE CONTINUOUS QUERY cpu_5m ON tsbs RESAMPLE EVERY 1s FOR 2h BEGIN {SELECT} "
          "INTO cpu_5m FROM cpu GROUP BY time(5m), * END")


def _query(settings: Settings, q: str, method: str = "GET") -> dict:
    params = {"q": q, "db": "tsbs", "epoch": "ns"}
    resp = (httpx.post(f"{settings.http_url}/query", data=params, timeout=60) if method == "POST"
            else httpx.get(f"{settings.http_url}/query", params=params, timeout=60))
    assert resp.status_code == 200, resp.text
    return resp.json()


def _series(body: dict) -> list:
    return body["results"][0].get("series", [])


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("cq"), kafka_bootstrap=kafka_bootstrap,
                        redis_url=redis_url, topic_prefix=unique("cq") + ".", partitions=2,
                        default_db="d", http_bind=f"127.0.0.1:{free_port()}",
                        persist_max_rows=200, persist_max_age=3600, tick_interval=1.0)
    worker = start_worker(settings, "w1", free_port())
    api = start_api(settings)
    try:
        yield settings
    finally:
        api.stop()
        worker.stop()


def test_continuous_query_downsamples_tsbs_and_follows_new_data(stack):
    settings = stack
    start = (time.time_ns() // FIVE_MIN) * FIVE_MIN - 9 * FIVE_MIN  # all windows complete
    lines = list(generate_lines(hosts=3, hours=35 / 60, start_ns=start))
    first, later = lines[: 3 * 90], lines[3 * 90:]  # 15 minutes, then 20 more
    end = start + 8 * FIVE_MIN

    def produce_lines(chunk: list[str]) -> None:
        asyncio.run(produce(settings, [("\n".join(chunk) + "\n").encode()], "tsbs"))

    def count() -> int:
        series = _series(_query(settings, "SELECT count(usage_user) FROM cpu"))
        return series[0]["values"][0][1] if series else 0

    by_hand = (f"{SELECT} FROM cpu WHERE time >= {start} AND time < {end} "
               "GROUP BY time(5m), * fill(none)")
    written = f"SELECT usage_user, usage_system FROM cpu_5m WHERE time >= {start} " \
              f"AND time < {end} GROUP BY *"

    last: dict = {}

    def matches() -> bool:
        expected = _series(_query(settings, by_hand))
        got = _series(_query(settings, written))
        for s in expected:  # the target's name; columns in the order the written query names
            s["name"], s["columns"] = "cpu_5m", ["time", "usage_user", "usage_system"]
        last.update(expected=expected, got=got)
        return bool(expected) and got == expected

    def explain() -> str:
        return f"expected {str(last.get('expected'))[:1500]}\ngot {str(last.get('got'))[:1500]}"

    produce_lines(first)
    wait_for(lambda: count() == len(first), timeout=60, what="first batch ingested")
    created = _query(settings, CREATE, method="POST")
    assert created == {"results": [{"statement_id": 0}]}, created
    shown = _series(_query(settings, "SHOW CONTINUOUS QUERIES"))
    assert {"name": "tsbs", "columns": ["name", "query"], "values": [["cpu_5m", CREATE]]} in shown
    try:
        wait_for(matches, timeout=60, what="continuous query output equals the query by hand")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain()}") from None
    before = _series(_query(settings, written))

    produce_lines(later)
    wait_for(lambda: count() == len(lines), timeout=60, what="second batch ingested")
    try:
        wait_for(matches, timeout=60, what="continuous query output follows new data")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain()}") from None
    assert len(_series(_query(settings, written))[0]["values"]) > len(before[0]["values"])

    dropped = _query(settings, "DROP CONTINUOUS QUERY cpu_5m ON tsbs", method="POST")
    assert dropped == {"results": [{"statement_id": 0}]}
    assert ["cpu_5m", CREATE] not in [v for s in _series(_query(settings, "SHOW CONTINUOUS "
                                                                "QUERIES"))
                                      for v in s.get("values", [])]

    # INTO goes through the write admission: integers into the float field are refused
    conflict = _query(settings, f"SELECT max(usage_user) AS usage_user INTO cpu_5m FROM cpu "
                                f"WHERE time >= {start} AND time < {end} GROUP BY time(5m), *",
                      method="POST")
    error = conflict["results"][0].get("error", "")
    assert error.startswith("partial write:") and "dropped=" in error, conflict

    # deleting the database deletes its continuous queries
    assert _query(settings, CREATE, method="POST") == {"results": [{"statement_id": 0}]}
    resp = httpx.delete(f"{settings.http_url}/api/v3/configure/database",
                        params={"db": "tsbs"}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert all("values" not in s for s in _series(_query(settings, "SHOW CONTINUOUS QUERIES")))

    # and so does InfluxQL's DROP DATABASE
    assert _query(settings, "CREATE DATABASE tsbs", method="POST") == {
        "results": [{"statement_id": 0}]}
    assert _query(settings, CREATE, method="POST") == {"results": [{"statement_id": 0}]}
    assert _query(settings, "DROP DATABASE tsbs", method="POST") == {
        "results": [{"statement_id": 0}]}
    assert all("values" not in s for s in _series(_query(settings, "SHOW CONTINUOUS QUERIES")))
