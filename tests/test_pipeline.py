"""End to end through real Kafka and Redis: line protocol on the writes topic becomes rows
in the buffer snapshots, visible through the HTTP SQL endpoint; bad lines land on the rejected
topic with their reason; a killed worker loses nothing."""
from __future__ import annotations

import asyncio

import httpx
import json
import random

import pytest

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import (produce, read_topic, rows, sql, start_api, start_worker, unique,
                           wait_for, wait_for_count)
from topics.wire import NUDGE_HEADER

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    """One worker and one API on a private topic prefix for this module."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("pipeline"),
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=unique("t") + ".",
        partitions=4,
        http_bind=f"127.0.0.1:{free_port()}",
        default_db="defaultdb",
    )
    worker = start_worker(settings, "w1", free_port())
    api = start_api(settings)
    yield settings, {"w1": worker, "api": api}
    for proc in (api, worker):
        proc.stop()


def test_walking_skeleton(stack):
    settings, _ = stack
    db = unique("demo")
    asyncio.run(produce(settings, [b"cpu,host=a usage=1"], db))
    got = wait_for(lambda: rows(settings, db, "SELECT * FROM cpu"), what="the row")
    assert len(got) == 1
    assert got[0]["host"] == "a" and got[0]["usage"] == 1.0 and "time" in got[0]


def test_default_db_and_csv(stack):
    settings, _ = stack
    asyncio.run(produce(settings, [b"mem,host=b used=5i 1000000000"], db=""))
    wait_for(lambda: rows(settings, settings.default_db, "SELECT * FROM mem"), what="row in default db")
    resp = sql(settings, settings.default_db, "SELECT host, used, time FROM mem", fmt="csv")
    assert resp.text == "host,used,time\nb,5,1970-01-01T00:00:01\n"


def test_unknown_database_is_404_and_bad_sql_400(stack):
    settings, _ = stack
    assert sql(settings, unique("nodb"), "SELECT 1").status_code == 404
    asyncio.run(produce(settings, [b"x v=1 1"], "sqlerr"))
    wait_for(lambda: rows(settings, "sqlerr", "SELECT * FROM x"), what="x row")
    resp = sql(settings, "sqlerr", "SELEC nonsense")
    assert resp.status_code == 400 and "SQL error" in resp.text


def make_lines(n: int, seed: int) -> tuple[list[bytes], int, dict[str, int]]:
    """``n`` lines, some invalid in known ways; returns (lines, valid count, invalid by kind)."""
    rnd = random.Random(seed)
    lines, kinds = [], {"syntax": 0, "type": 0, "time_field": 0, "dup_tag": 0}
    valid = 0
    for i in range(n):
        roll = rnd.random() if i % 5000 else 1.0  # each message starts with a valid line
        ts = 1_700_000_000_000_000_000 + i * 1_000_000_000
        if roll < 0.01:
            lines.append(f"load,host=h{i} {ts}".encode())
            kinds["syntax"] += 1
        elif roll < 0.02:
            lines.append(f"load,host=h{i} value=\"text\" {ts}".encode())
            kinds["type"] += 1
        elif roll < 0.025:
            lines.append(f"load,host=h{i} time=1 {ts}".encode())
            kinds["time_field"] += 1
        elif roll < 0.03:
            lines.append(f"load,host=h{i},host=x value=1 {ts}".encode())
            kinds["dup_tag"] += 1
        else:
            lines.append(f"load,host=h{i},region=r{i % 7} value={rnd.random()} {ts}".encode())
            valid += 1
    return lines, valid, kinds


def test_hundred_thousand_lines_valid_and_rejected_add_up(stack):
    settings, _ = stack
    db = unique("bulk")
    # fix the type of `value` first, so the string lines are a type conflict in every message
    asyncio.run(produce(settings, [b"load,host=seed value=0.5 1"], db, partition=0))
    wait_for(lambda: rows(settings, db, "SELECT count(*) AS n FROM load"), what="seed row")
    lines, valid, kinds = make_lines(100_000, seed=7)
    messages = [b"\n".join(lines[i:i + 5000]) for i in range(0, len(lines), 5000)]
    async def send_all():
        for idx, msg in enumerate(messages):
            await produce(settings, [msg], db, partition=idx % settings.partitions)
    asyncio.run(send_all())
    expected_rows = valid + 1
    wait_for_count(settings, db, "load", expected_rows, timeout=120)
    invalid = sum(kinds.values())
    assert valid + invalid == 100_000
    records = asyncio.run(read_topic(settings, settings.rejected_topic, until_count=None, timeout=60))
    mine = [json.loads(r.value) for r in records if json.loads(r.value)["database"] == db]
    assert len(mine) == invalid
    expected_invalid = {ln.decode() for ln in lines if b"region=" not in ln}
    assert {m["original"] for m in mine} == expected_invalid
    for m in mine:
        assert m["line"] >= 1 and m["topic"] == settings.writes_topic and m["reason"]
        original, reason = m["original"], m["reason"]
        if 'value="text"' in original:
            assert "value" in reason and "string" in reason.lower(), reason
        elif " time=1 " in original:
            assert "time" in reason, reason
        elif ",host=x " in original:
            assert "host" in reason, reason


def test_table_partition_template_from_the_api(stack):
    settings, _ = stack
    db = unique("tmpl")
    resp = httpx.post(f"{settings.http_url}/api/v3/configure/table", json={
        "db": db, "table": "t", "tags": ["region"], "fields": [{"name": "v", "type": "float64"}],
        "partition_template": {"time_format": "%Y-%m", "tags": ["region"]}})
    assert resp.status_code == 200, resp.text
    assert httpx.post(f"{settings.http_url}/api/v3/configure/table", json={"db": db, "table": "t"}).status_code == 409
    listed = httpx.get(f"{settings.http_url}/api/v3/configure/database", params={"format": "json"}).json()
    assert {"iox::database": db} in listed
    asyncio.run(produce(settings, [b"t,region=eu v=1 0\nt,region=us v=2 0\nt v=3 0"], db))
    import redis as redis_client
    client = redis_client.Redis.from_url(settings.redis_url)
    key = f"{settings.app_id}:db:{db}:t:t:buf"
    wait_for(lambda: client.hlen(key) == 3, what="three partitions buffered")
    assert sorted(f.decode().split(":", 2)[2] for f in client.hkeys(key)) == ["1970-01|!", "1970-01|eu", "1970-01|us"]
    assert len(rows(settings, db, "SELECT * FROM t")) == 3


def test_influxdb_clients_write_and_query(stack):
    """Real InfluxDB clients: v2 client writes, v1 client writes (/write) and queries (/query)."""
    from influxdb import InfluxDBClient
    from influxdb_client import InfluxDBClient as V2Client
    from influxdb_client.client.write_api import SYNCHRONOUS

    settings, _ = stack
    db = unique("clients")
    with V2Client(url=settings.http_url, token="unused", org="any") as v2:
        v2.write_api(write_options=SYNCHRONOUS).write(bucket=db, record="m,host=a v=1 1000000000")
    v1 = InfluxDBClient(settings.http_host, settings.http_port, database=db)
    v1.write_points([{"measurement": "m", "tags": {"host": "b"}, "fields": {"v": 2.5},
                      "time": 2_000_000_000}], time_precision="n")
    wait_for(lambda: len(rows(settings, db, "SELECT * FROM m")) == 2, what="both client writes")
    points = list(v1.query("SELECT v, host FROM m").get_points())
    assert points == [{"time": "1970-01-01T00:00:01Z", "v": 1, "host": "a"},
                      {"time": "1970-01-01T00:00:02Z", "v": 2.5, "host": "b"}]
    grouped = v1.query("SELECT max(v) FROM m GROUP BY host")
    assert list(grouped.get_points(tags={"host": "b"})) == [{"time": "1970-01-01T00:00:02Z", "max": 2.5}]  # a selector keeps its point time
    resp = httpx.get(f"{settings.http_url}/api/v3/query_influxql",
                     params={"db": db, "q": "SELECT v FROM m WHERE host = 'a'", "format": "json"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [{"iox::measurement": "m", "time": "1970-01-01T00:00:01", "v": 1.0}]
    bad = httpx.get(f"{settings.http_url}/query", params={"db": db, "q": "SELEC v FROM m"})
    assert bad.status_code == 400 and "error parsing query" in bad.json()["error"]


def test_influxdb3_python_client_writes_and_queries_over_flight(stack):
    """influxdb3-python, unchanged: writes over HTTP, queries SQL and InfluxQL over Flight on
    the same port."""
    from influxdb_client_3 import InfluxDBClient3

    settings, _ = stack
    db = unique("v3client")
    with InfluxDBClient3(host=settings.http_url, token="unused", database=db) as client:
        client.write(record="m,host=a v=1i 1000000000\nm,host=b v=2i 2000000000", write_precision="ns")
        wait_for(lambda: len(rows(settings, db, "SELECT * FROM m")) == 2, what="v3 client writes")
        table = client.query("SELECT host, v FROM m ORDER BY host", language="sql")
        assert table.to_pydict() == {"host": ["a", "b"], "v": [1, 2]}
        influxql = client.query("SELECT v FROM m WHERE host = 'b'", language="influxql")
        assert influxql.column("iox::measurement").to_pylist() == ["m"]
        assert influxql.column("v").to_pylist() == [2]


def test_token_auth_on_http_and_flight(stack):
    import base64

    from influxdb_client_3 import InfluxDBClient3
    from influxdb_client_3.exceptions import InfluxDB3ClientQueryError

    settings, _ = stack
    secured = settings.replace(token="s3cret", http_bind=f"127.0.0.1:{free_port()}")
    api = start_api(secured)
    try:
        base = secured.http_url
        db = unique("auth")
        assert httpx.post(f"{base}/api/v3/configure/database", json={"db": db}).status_code == 401
        assert httpx.post(f"{base}/api/v3/configure/database", json={"db": db},
                          headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ping").status_code == 200
        q = {"db": db, "q": "SELECT 1"}
        assert httpx.get(f"{base}/api/v3/query_sql", params=q).status_code == 401
        assert httpx.get(f"{base}/api/v3/query_sql", params=q,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        for header in ("Bearer s3cret", "Token s3cret",
                       "Basic " + base64.b64encode(b"user:s3cret").decode()):
            assert httpx.get(f"{base}/api/v3/query_sql", params=q,
                             headers={"Authorization": header}).status_code != 401, header
        assert httpx.get(f"{base}/query", params={"q": "SHOW DATABASES", "p": "s3cret"}).status_code == 200
        assert httpx.post(f"{base}/api/v3/write_lp", params={"db": "x"}, content=b"m v=1").status_code == 401
        with InfluxDBClient3(host=base, token="wrong", database=db) as bad:
            with pytest.raises(InfluxDB3ClientQueryError, match="unauthorized"):
                bad.query("SELECT 1")
        with InfluxDBClient3(host=base, token="s3cret", database=db) as good:
            assert good.query("SELECT 1 AS one").to_pydict() == {"one": [1]}
    finally:
        api.stop()


def test_large_results_stream_in_every_format(stack):
    import io

    import pyarrow.parquet as pq

    settings, _ = stack
    db = unique("big")
    n = 30_000
    asyncio.run(produce(settings, ["\n".join(f"s,k=k{i % 7} v={i}i {i}" for i in range(n)).encode()], db))
    wait_for_count(settings, db, "s", n)
    q = "SELECT k, v, time FROM s ORDER BY v"
    got = {fmt: sql(settings, db, q, fmt=fmt) for fmt in ("json", "jsonl", "csv", "parquet")}
    assert all(r.status_code == 200 for r in got.values())
    assert len(got["json"].json()) == n
    assert got["jsonl"].text.count("\n") == n
    assert got["csv"].text.count("\n") == n + 1
    assert pq.read_table(io.BytesIO(got["parquet"].content)).num_rows == n
    bad = sql(settings, db, "SELECT CAST(k AS INT) FROM s")
    assert bad.status_code == 400, bad.text


def test_no_request_crashes_the_api(stack):
    """Random queries, bodies and parameters: never a 5xx, and the API keeps answering."""
    from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

    settings, procs = stack
    db = unique("fuzz")
    asyncio.run(produce(settings, [b"cpu,host=a usage=1 1\ncpu,host=b usage=2 2"], db))
    wait_for(lambda: rows(settings, db, "SELECT * FROM cpu"), what="fuzz data")
    base = settings.http_url
    words = st.sampled_from(["SELECT", "*", "FROM", "cpu", "WHERE", "time", ">", "now()", "-", "1h",
                             "GROUP", "BY", "host", "count(usage)", "'a'", "\"cpu\"", ";", "(", ")",
                             "LIMIT", "10", "fill(previous)", "SHOW", "MEASUREMENTS", "=~", "/a/",
                             "ORDER", "DESC", "JOIN", "usage", "1e309", "'", "\\", "\x00", "ñ"])
    text = st.one_of(st.text(max_size=80), st.lists(words, max_size=14).map(" ".join))
    client = httpx.Client(timeout=30)

    @hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(q=text, body=st.binary(max_size=300), fmt=st.sampled_from(["json", "csv", "jsonl", "pretty",
                                                                       "parquet", "xml", ""]),
           precision=st.sampled_from(["ns", "s", "auto", "bogus", ""]), target=st.sampled_from([db, "", "no-db", "bad name"]))
    @example(q="", body=b"6", fmt="parquet", precision="ns", target=db)  # a JSON body, not an object
    def probe(q, body, fmt, precision, target):
        calls = [
            client.get(f"{base}/api/v3/query_sql", params={"db": target, "q": q, "format": fmt}),
            client.post(f"{base}/api/v3/query_sql", content=body, headers={"content-type": "application/json"}),
            client.get(f"{base}/api/v3/query_influxql", params={"db": target, "q": q, "format": fmt}),
            client.get(f"{base}/query", params={"db": target, "q": q, "epoch": precision}),
            client.post(f"{base}/api/v3/write_lp", params={"db": target, "precision": precision}, content=body),
            client.post(f"{base}/write", params={"db": target}, content=body,
                        headers={"content-encoding": "gzip"} if body[:1] == b"\x1f" else {}),
            client.post(f"{base}/api/v3/configure/table", content=body),
        ]
        for resp in calls:
            assert resp.status_code < 500, (resp.request.url, resp.status_code, resp.text[:300])

    probe()
    assert procs["api"].alive()
    assert httpx.get(f"{base}/health").status_code == 200


def test_v1_chunked_query(stack):
    from influxdb import InfluxDBClient

    settings, _ = stack
    db = unique("chunk")
    asyncio.run(produce(settings, ["\n".join(f"c,h=h{i % 2} v={i}i {i}" for i in range(25)).encode()], db))
    wait_for_count(settings, db, "c", 25)
    resp = httpx.get(f"{settings.http_url}/query", params={
        "db": db, "q": "SELECT v FROM c GROUP BY h", "chunked": "true", "chunk_size": "5"})
    parts = [json.loads(line) for line in resp.text.splitlines()]
    assert len(parts) == 6  # 13 + 12 values in pieces of 5
    assert all(p["results"][0].get("partial") for p in parts[:-1]) and "partial" not in parts[-1]["results"][0]
    client = InfluxDBClient(settings.http_host, settings.http_port, database=db)
    points = [p for rs in client.query("SELECT v FROM c", chunked=True, chunk_size=4) for p in rs.get_points()]
    assert sorted(p["v"] for p in points) == list(range(25))


def test_cli_writes_from_a_pipe_and_a_file_and_queries(stack, tmp_path):
    """`influent write` from stdin (no size known) and from a file, then `influent query`."""
    import subprocess
    import sys

    from tests.harness import ROOT

    settings, _ = stack
    db = unique("cli")
    base = [sys.executable, "-m", "influent.cli", "--http-bind", settings.http_bind]
    piped = subprocess.run(base + ["write", "--db", db], input=b"cpu,host=a usage=1 1000000000\n",
                           cwd=ROOT, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    assert b"bytes sent" in piped.stderr
    source = tmp_path / "more.lp"
    source.write_bytes(b"cpu,host=b usage=2 2000000000\ncpu,host=c usage=oops 3000000000\n")
    from_file = subprocess.run(base + ["write", "--db", db, str(source)], cwd=ROOT, capture_output=True)
    assert from_file.returncode == 1 and b"invalid field value" in from_file.stderr  # the bad line, named
    wait_for_count(settings, db, "cpu", 2)
    shown = subprocess.run(base + ["query", "--db", db, "--format", "csv",
                                   "SELECT host, usage FROM cpu ORDER BY host"],
                           cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["host,usage", "a,1.0", "b,2.0"]


def test_a_nudge_record_is_passed_over(stack):
    """The empty record a worker sends to reveal a stranded tail (header ``influent-nudge``) is
    never ingested, whatever it carries; the record after it is."""
    settings, _ = stack
    db = unique("nudge")
    asyncio.run(produce(settings, [b"n v=99 1"], db, partition=0,
                        headers=[(NUDGE_HEADER, b"1")]))
    asyncio.run(produce(settings, [b"n v=1 2"], db, partition=0))
    wait_for_count(settings, db, "n", 1)
    assert rows(settings, db, "SELECT v FROM n") == [{"v": 1.0}]
