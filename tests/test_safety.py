"""Safety end to end (real Kafka, Redis, worker and API): every query path is read-only, and
what a write is told was written is exactly what becomes queryable, over HTTP and Kafka."""
from __future__ import annotations

import asyncio
import gzip
import threading

import httpx
import pytest

from influent.config import Settings
from influent.devstack import free_port
from tests.engine_harness import call, engine_stack, new_db, rows
from tests.harness import ROOT, produce, read_topic, start_api, unique, wait_for
from topics.wire import RejectedLine

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000_000

#: Statements no query endpoint may run; each would touch the server or the session.
WRITING_STATEMENTS = [
    "COPY (SELECT 1 AS x) TO '{path}' STORED AS CSV",
    "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{path}'",
    "CREATE TABLE made AS VALUES (1)",
    "INSERT INTO m VALUES ('a', 1.0, 0)",
    "SET datafusion.execution.batch_size = 1",
    "DROP TABLE m",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{path}' STORED AS CSV",
]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    yield from engine_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("safety"), "safe",
                            plugin_dir=str(ROOT / "tests" / "plugins"),
                            max_body_bytes=1024 * 1024)


def write(settings: Settings, path: str, body: bytes, **params) -> httpx.Response:
    return call(settings, "POST", path, params=params, content=body)


def rejected_for(settings: Settings, db: str) -> list[RejectedLine]:
    records = asyncio.run(read_topic(settings, settings.rejected_topic))
    found = [RejectedLine.from_json(r.value) for r in records]
    return [r for r in found if r.database == db]


# ---- Found 1: SQL can write files on the server ---------------------------------------------


def test_http_sql_refuses_every_statement_that_is_not_a_query(stack, tmp_path):
    settings = stack
    db = unique("ro")
    assert write(settings, "/api/v3/write_lp", f"m,t=a v=1 {T0}".encode(), db=db).status_code == 204
    wait_for(lambda: rows(settings, db, "SELECT * FROM m"), what="the row")
    for n, template in enumerate(WRITING_STATEMENTS):
        path = tmp_path / f"out{n}.csv"
        if "LOCATION" in template:
            path.write_text("secret\n")  # an existing file a table could expose
        q = template.format(path=path)
        for method in ("GET", "POST"):
            args = {"params": {"db": db, "q": q}} if method == "GET" else {"json": {"db": db, "q": q}}
            resp = call(settings, method, "/api/v3/query_sql", **args)
            assert resp.status_code == 400, (q, resp.text)
            assert "read-only" in resp.text or "only queries" in resp.text, resp.text
        if "LOCATION" not in template:
            assert not path.exists(), q
    assert rows(settings, db, "SELECT t, v FROM m") == [{"t": "a", "v": 1.0}]


def test_flight_refuses_every_statement_that_is_not_a_query(stack, tmp_path):
    from influxdb_client_3 import InfluxDBClient3

    settings = stack
    db = unique("roflight")
    assert write(settings, "/api/v3/write_lp", f"m,t=a v=1 {T0}".encode(), db=db).status_code == 204
    wait_for(lambda: rows(settings, db, "SELECT * FROM m"), what="the row")
    with InfluxDBClient3(host=settings.http_url, token="unused", database=db) as client:
        for n, template in enumerate(WRITING_STATEMENTS):
            path = tmp_path / f"flight{n}.csv"
            q = template.format(path=path)
            with pytest.raises(Exception) as failure:
                client.query(q, language="sql")
            assert "only queries" in str(failure.value), str(failure.value)
            if "LOCATION" not in template:
                assert not path.exists(), q
        assert client.query("SELECT v FROM m", language="sql").column("v").to_pylist() == [1.0]


def test_plugin_queries_are_read_only(stack, tmp_path):
    settings = stack
    db = new_db(settings, "roplugin")
    path = f"ro/{unique('p')}"
    body = {"db": db, "plugin_filename": "query_any.py", "trigger_name": "q",
            "trigger_specification": f"request:{path}", "trigger_arguments": None,
            "trigger_settings": {"run_async": False, "error_behavior": "log"}, "disabled": False}
    assert call(settings, "POST", "/api/v3/configure/processing_engine_trigger",
                json=body).status_code == 200
    target = tmp_path / "plugin.csv"
    resp = call(settings, "GET", f"/api/v3/engine/{path}",
                params={"q": f"COPY (SELECT 1 AS x) TO '{target}' STORED AS CSV"})
    assert resp.status_code == 400 and "only queries" in resp.json()["error"], resp.text
    assert not target.exists()
    ok = call(settings, "GET", f"/api/v3/engine/{path}", params={"q": "SELECT 1 AS one"})
    assert ok.status_code == 200 and ok.json() == {"rows": [{"one": 1}]}, ok.text


# ---- Found 2: a write answered 204 is dropped afterwards --------------------------------------


def test_http_refuses_what_ingest_would_reject_and_writes_the_rest(stack):
    settings = stack
    db = unique("reserved")
    bad = write(settings, "/api/v3/write_lp", b"cpu,host=a __influent_ts=1i,v=1 1000", db=db)
    assert bad.status_code == 400, bad.text
    assert "reserved" in bad.json()["data"][0]["error_message"]
    mixed = write(settings, "/api/v3/write_lp",
                  f"cpu,host=a __influent_ts=1i,v=1 {T0}\ncpu,host=b v=2 {T0}".encode(), db=db)
    assert mixed.status_code == 400 and [e["line_number"] for e in mixed.json()["data"]] == [1]
    got = wait_for(lambda: rows(settings, db, "SELECT host, v FROM cpu"), what="the valid line")
    assert got == [{"host": "b", "v": 2.0}]


# ---- Found 3: accept_partial loses valid lines -------------------------------------------------


def test_partial_write_keeps_the_valid_lines_around_a_newline_in_a_string(stack):
    settings = stack
    db = unique("partial")
    body = (b'm,t=a s="line one\nline two" 1700000000000000000\n'
            b'm,t=b v= 1700000000000000001\n'
            b'm,t=c v=3 1700000000000000002')
    resp = write(settings, "/api/v3/write_lp", body, db=db)
    assert resp.status_code == 400
    assert [e["line_number"] for e in resp.json()["data"]] == [3]
    got = wait_for(lambda: rows(settings, db, "SELECT t, s, v FROM m ORDER BY t")
                   if len(rows(settings, db, "SELECT t FROM m")) == 2 else None, what="both lines")
    assert got == [{"t": "a", "s": "line one\nline two"}, {"t": "c", "v": 3.0}]


# ---- Found 4: /write with a retention policy ----------------------------------------------------


def test_v1_write_with_a_retention_policy_writes_database_db_slash_rp(stack):
    settings = stack
    db = unique("rp")
    resp = write(settings, "/write", f"m,t=a v=1 {T0}".encode(), db=db, rp="weekly")
    assert resp.status_code == 204, resp.text
    got = wait_for(lambda: call(settings, "GET", "/query", params={
        "db": db, "rp": "weekly", "q": "SELECT v FROM m"}).json()["results"][0].get("series"),
        what="the row under db/rp")
    assert got[0]["values"] == [["2023-11-14T22:13:20Z", 1]]
    assert rows(settings, f"{db}/weekly", "SELECT v FROM m") == [{"v": 1.0}]
    assert write(settings, "/write", b"m v=1", db=db, rp="bad rp").status_code == 400


# ---- Found 5: no_sync, v1 precision m/h, Kafka headers, gzip bombs ---------------------------


def test_no_sync_write_is_acknowledged_and_arrives(stack):
    settings = stack
    db = unique("nosync")
    resp = write(settings, "/api/v3/write_lp", f"m v=1 {T0}".encode(), db=db, no_sync="true")
    assert resp.status_code == 204, resp.text
    wait_for(lambda: rows(settings, db, "SELECT v FROM m") == [{"v": 1.0}], what="the row")


def test_v1_precision_minutes_and_hours(stack):
    settings = stack
    db = unique("prec")
    assert write(settings, "/write", b"m,u=m v=1 2", db=db, precision="m").status_code == 204
    assert write(settings, "/write", b"m,u=h v=1 3", db=db, precision="h").status_code == 204
    got = wait_for(lambda: (r := rows(settings, db, "SELECT u, time FROM m ORDER BY u")) and
                   len(r) == 2 and r, what="both rows")
    assert got == [{"u": "h", "time": "1970-01-01T03:00:00"},
                   {"u": "m", "time": "1970-01-01T00:02:00"}]


def test_kafka_precision_and_gzip_headers(stack):
    settings = stack
    db = unique("kafkahdr")
    asyncio.run(produce(settings, [gzip.compress(b"m,k=gz v=1 5\nm,k=gz2 v=2 6")], db,
                        headers=[("content-encoding", b"gzip"), ("precision", b"s")]))
    asyncio.run(produce(settings, [b"m,k=ms v=3 7"], db, headers=[("precision", b"ms")]))
    got = wait_for(lambda: (r := rows(settings, db, "SELECT k, v, time FROM m ORDER BY k")) and
                   len(r) == 3 and r, what="three rows")
    assert got == [{"k": "gz", "v": 1.0, "time": "1970-01-01T00:00:05"},
                   {"k": "gz2", "v": 2.0, "time": "1970-01-01T00:00:06"},
                   {"k": "ms", "v": 3.0, "time": "1970-01-01T00:00:00.007"}]


def test_a_gzip_bomb_on_the_writes_topic_is_rejected_with_a_reason(stack):
    settings = stack
    db = unique("bomb")
    bomb = gzip.compress(b"m v=1 1\n" * (settings.max_body_bytes // 8 + 1000))
    asyncio.run(produce(settings, [bomb], db, headers=[("content-encoding", b"gzip")]))
    asyncio.run(produce(settings, [b"after v=1 1"], db))
    wait_for(lambda: rows(settings, db, "SELECT v FROM after"), what="the write after the bomb")
    found = wait_for(lambda: rejected_for(settings, db), what="the bomb's rejection")
    assert len(found) == 1 and "exceeds the limit" in found[0].reason, found
    assert rows(settings, db, "SELECT count(*) AS n FROM m") == []


# ---- query guardrails ----------------------------------------------------------------------------


def test_query_time_and_memory_limits_answer_errors_while_health_answers(stack):
    settings = stack.replace(http_bind=f"127.0.0.1:{free_port()}", query_timeout=3.0,
                             query_memory_bytes=16 * 1024 * 1024)
    db = unique("limits")
    assert write(stack, "/api/v3/write_lp", f"m v=1 {T0}".encode(), db=db).status_code == 204
    wait_for(lambda: rows(stack, db, "SELECT v FROM m"), what="the row")
    api = start_api(settings)
    try:
        outcome: dict = {}

        def slow() -> None:
            outcome["resp"] = call(settings, "GET", "/api/v3/query_sql", params={
                "db": db, "q": "SELECT sum(value * 2) AS s FROM range(0, 100000000000)"})

        runner = threading.Thread(target=slow)
        runner.start()
        health = call(settings, "GET", "/health")
        answered_during_query = runner.is_alive()
        runner.join(60)
        assert health.status_code == 200 and answered_during_query
        resp = outcome["resp"]
        assert resp.status_code == 504 and "time limit" in resp.json()["error"], resp.text
        big = call(settings, "GET", "/api/v3/query_sql", params={
            "db": db, "q": "SELECT array_agg(value) AS a FROM range(0, 5000000)"})
        assert big.status_code == 400 and "memory limit" in big.text, big.text
        assert call(settings, "GET", "/api/v3/query_sql", params={
            "db": db, "q": "SELECT v FROM m"}).json() == [{"v": 1.0}]
    finally:
        api.stop()


def test_trigger_writes_are_admitted_like_any_write(stack):
    settings = stack
    db = new_db(settings, "trgwrite")
    path = f"wr/{unique('p')}"
    body = {"db": db, "plugin_filename": "write_checked.py", "trigger_name": "w",
            "trigger_specification": f"request:{path}", "trigger_arguments": None,
            "trigger_settings": {"run_async": False, "error_behavior": "log"}, "disabled": False}
    assert call(settings, "POST", "/api/v3/configure/processing_engine_trigger",
                json=body).status_code == 200
    resp = call(settings, "GET", f"/api/v3/engine/{path}", params={
        "sync": f"m,k=s1 __influent_ts=1i,v=1 {T0}",
        "buffered": f"m,k=b1 v=2 {T0}|m,k=b2 v= {T0}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["sync"].startswith("WriteRefused: line 1 rejected: column name"), resp.text
    got = wait_for(lambda: rows(settings, db, "SELECT k, v FROM m"), what="the buffered line")
    assert got == [{"k": "b1", "v": 2.0}]
    logged = wait_for(lambda: [r for r in rows(settings, db, "SELECT log_level, log_text FROM "
                                                   "system.processing_engine_logs")
                               if "rejected" in r["log_text"]], what="the rejection in the log")
    assert logged[0]["log_level"] == "ERROR" and "line 2 rejected" in logged[0]["log_text"]
    found = wait_for(lambda: (r := rejected_for(settings, db)) and len(r) >= 2 and r,
                     what="the rejected-topic records")
    assert sorted(r.line for r in found) == [1, 2]
    assert {r.topic for r in found} == {f"trigger:{db}/w"}
