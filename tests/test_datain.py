"""Getting data in, end to end against real Kafka, Redis and a real InfluxDB 1.x:

* Telegraf JSON on the writes topic (and ``POST /api/v3/write_json``) gives the same rows as
  the equivalent line protocol; a bad metric lands on the rejected topic, named, while the
  rest of its batch is written;
* ``influent migrate influxdb1`` copies TSBS data and a mixed-type measurement with every
  point and type intact, and a run killed half-way resumes to the same counts;
* ``influx_inspect export`` output (gzip'd, two retention policies) imports to the same rows.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from benchmarks.tsbs import generate_lines
from influent.config import Settings
from influent.devstack import free_port
from persist.catalog import Catalog
from tests.harness import (ROOT, produce, read_topic, rows, start_api, start_worker, unique,
                           wait_for, wait_for_count)
from tests.influxdb1_tools import ensure_influx_inspect
from tests.influxql_compat.server import InfluxDB1
from topics.wire import RejectedLine

pytestmark = pytest.mark.integration

T0 = 1_451_606_400_000_000_000  # 2016-01-01, where the TSBS data starts
MIXED = "\n".join([
    f'mixed,site=north\\ pole,kind=a\\,b f=1.0,i=9007199254740993i,s="hi \\"there\\"",b=true {T0}',
    f"mixed,site=south f=2.5,i=-3i {T0 + 10**10}",
    f'mixed,site=south s="only a string" {T0 + 2 * 10**10}',
    f"mixed,site=east b=false,f=0 {T0 + 3 * 10**10}",
    f'mixed,site=east f=1e-10,i=0i,s="",b=true {T0 + 4 * 10**10}',
]).encode()
RP2_LINES = f"events,kind=deploy n=1i {T0}\nevents,kind=rollback n=2i {T0 + 10**9}".encode()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("datain"), kafka_bootstrap=kafka_bootstrap,
                        redis_url=redis_url, topic_prefix=unique("t") + ".", partitions=4,
                        http_bind=f"127.0.0.1:{free_port()}", default_db="defaultdb")
    worker = start_worker(settings, "w1", free_port())
    api = start_api(settings)
    yield settings
    for proc in (api, worker):
        proc.stop()


# ---- Telegraf JSON --------------------------------------------------------------------------

def test_json_batch_gives_the_rows_of_the_equivalent_line_protocol(stack):
    settings = stack
    db_json, db_lp, db_http = unique("json"), unique("lp"), unique("http")
    batch = {"metrics": [
        {"name": "docker", "tags": {"host": "raynor", "dc": "a b"},
         "fields": {"n_images": 660, "ratio": 0.5, "up": True, "state": "running"},
         "timestamp": 1458229140},
        {"name": "docker", "tags": {"host": "kerrigan"}, "fields": {"n_images": 3},
         "timestamp": 1458229150},
        {"name": "disk", "tags": {"path": "/"}, "fields": {"free": 1.5e9}, "timestamp": 1458229140},
    ]}
    single = {"name": "docker", "tags": {"host": "raynor", "dc": "a b"},
              "fields": {"n_images": 661}, "timestamp": 1458229160}
    lp = [b'docker,dc=a\\ b,host=raynor n_images=660.0,ratio=0.5,up=true,state="running" 1458229140\n'
          b"docker,host=kerrigan n_images=3.0 1458229150\n"
          b"disk,path=/ free=1500000000.0 1458229140",
          b"docker,dc=a\\ b,host=raynor n_images=661.0 1458229160"]
    asyncio.run(produce(settings, [orjson.dumps(batch)], db_json,
                        headers=[("content-type", b"application/json"), ("precision", b"s")]))
    asyncio.run(produce(settings, [orjson.dumps(single)], db_json))  # no headers: sniffed, auto
    asyncio.run(produce(settings, lp, db_lp, headers=[("precision", b"s")]))
    resp = httpx.post(f"{settings.http_url}/api/v3/write_json", params={"db": db_http, "precision": "s"},
                      content=orjson.dumps(batch) + b"\n", timeout=30)
    assert resp.status_code == 204, resp.text
    resp = httpx.post(f"{settings.http_url}/api/v3/write_json", params={"db": db_http},
                      content=orjson.dumps(single), timeout=30)
    assert resp.status_code == 204, resp.text
    for db in (db_json, db_lp, db_http):
        wait_for_count(settings, db, "docker", 3)
        wait_for_count(settings, db, "disk", 1)
    for table, order in (("docker", "host, time"), ("disk", "time")):
        expected = rows(settings, db_lp, f"SELECT * FROM {table} ORDER BY {order}")
        assert rows(settings, db_json, f"SELECT * FROM {table} ORDER BY {order}") == expected
        assert rows(settings, db_http, f"SELECT * FROM {table} ORDER BY {order}") == expected
    assert expected == [{"free": 1.5e9, "path": "/", "time": "2016-03-17T15:39:00"}]


def test_bad_json_metric_is_rejected_by_name_and_the_rest_written(stack):
    settings = stack
    db = unique("jsonbad")
    batch = {"metrics": [
        {"name": "m", "tags": {"host": "a"}, "fields": {"v": 1}, "timestamp": 1458229140},
        {"name": "m", "tags": {"host": "b"}, "fields": {"v": {"nested": 1}}, "timestamp": 1458229140},
        {"name": "m", "tags": {"host": "c"}, "fields": {"v": 3}, "timestamp": 1458229140},
        {"name": "m", "tags": {"host": "d"}, "fields": {"v": "text"}, "timestamp": 1458229140},
    ]}
    asyncio.run(produce(settings, [orjson.dumps(batch)], db,
                        headers=[("content-type", b"application/json")]))
    wait_for_count(settings, db, "m", 2)
    assert [r["host"] for r in rows(settings, db, "SELECT host FROM m ORDER BY host")] == ["a", "c"]
    records = rejected_for(settings, db, 2)
    by_line = {r.line: r for r in records}
    assert set(by_line) == {2, 4}
    assert by_line[2].reason.startswith("metrics[1]: field 'v' holds an object")
    assert orjson.loads(by_line[2].original)["tags"] == {"host": "b"}
    assert by_line[4].reason.startswith("metrics[3]: ") and "type" in by_line[4].reason
    assert orjson.loads(by_line[4].original)["fields"] == {"v": "text"}


def test_json_numbers_stay_integers_where_the_catalog_has_integers(stack):
    settings = stack
    db = unique("jsonint")
    asyncio.run(produce(settings, [b"m,host=a count=1i,ratio=0.5 1458229140000000000"], db))
    wait_for_count(settings, db, "m", 1)
    metric = {"name": "m", "tags": {"host": "b"}, "fields": {"count": 5, "ratio": 1},
              "timestamp": 1458229140}
    asyncio.run(produce(settings, [orjson.dumps(metric)], db,
                        headers=[("content-type", b"application/json")]))
    wait_for_count(settings, db, "m", 2)
    got = rows(settings, db, "SELECT host, count, ratio FROM m ORDER BY host")
    assert got[1] == {"host": "b", "count": 5, "ratio": 1.0}
    assert isinstance(got[1]["count"], int) and isinstance(got[1]["ratio"], float)


def rejected_for(settings: Settings, db: str, count: int) -> list[RejectedLine]:
    """The rejected-line records of ``db``, once there are ``count`` of them."""
    def mine() -> list[RejectedLine] | None:
        records = asyncio.run(read_topic(settings, settings.rejected_topic, timeout=5))
        found = [r for r in map(RejectedLine.from_json, (x.value for x in records)) if r.database == db]
        return found if len(found) >= count else None
    return wait_for(mine, what=f"{count} rejected records of {db}")


def test_write_json_reports_errors_by_element(stack):
    settings = stack
    db = unique("jsonhttp")
    body = orjson.dumps({"metrics": [{"name": "m", "fields": {"v": 1}, "timestamp": 1},
                                     {"name": "m", "fields": []}]})
    resp = httpx.post(f"{settings.http_url}/api/v3/write_json", params={"db": db}, content=body,
                      timeout=30)
    assert resp.status_code == 400
    err = resp.json()
    assert err["error"] == "partial write of line protocol occurred"
    assert err["data"][0]["line_number"] == 2
    assert err["data"][0]["error_message"].startswith('metrics[1]: "fields" must be an object')
    bad = httpx.post(f"{settings.http_url}/api/v3/write_json", params={"db": db}, content=b"{oops",
                     timeout=30)
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]
    wait_for_count(settings, db, "m", 1)


# ---- InfluxDB 1.x migration and import ------------------------------------------------------

@pytest.fixture(scope="module")
def source_db(influxdb1: InfluxDB1):
    """A database in the real influxd: TSBS cpu (3 hosts, 1 h), a mixed-type measurement, and
    a second, non-default retention policy. Dropped afterwards: the influxd is shared with the
    InfluxQL compatibility suite, whose SHOW DATABASES must not see it."""
    db = unique("src")
    for q in (f'CREATE DATABASE "{db}"',
              f'CREATE RETENTION POLICY "rp2" ON "{db}" DURATION INF REPLICATION 1'):
        status, body = influxdb1.request("POST", "/query", {"q": q})
        assert status == 200 and b"error" not in body, body
    influxdb1.write(db, "\n".join(generate_lines(3, 1.0)).encode())
    influxdb1.write(db, MIXED)
    status, body = influxdb1.request("POST", "/write", {"db": db, "rp": "rp2"}, RP2_LINES)
    assert status == 204, body
    yield db
    influxdb1.request("POST", "/query", {"q": f'DROP DATABASE "{db}"'})


def source_points(server: InfluxDB1, db: str, measurement: str, rp: str | None = None) -> dict:
    """(sorted tags, time ns) -> fields (non-null) of every point in the 1.x database."""
    target = f'"{db}"."{rp}"."{measurement}"' if rp else f'"{measurement}"'
    body = server.query(f"SELECT * FROM {target} GROUP BY *", db, epoch="ns")
    points = {}
    for series in body["results"][0]["series"]:
        tags = tuple(sorted((k, v) for k, v in series["tags"].items() if v))
        for row in series["values"]:
            rec = dict(zip(series["columns"], row))
            at = rec.pop("time")
            points[(tags, at)] = {k: v for k, v in rec.items() if v is not None}
    return points


def influent_points(settings: Settings, db: str, measurement: str) -> dict:
    """The same shape from influent, with each value's column type from the catalog."""
    schema = asyncio.run(_schema(settings, db, measurement))
    tags = [c for c, k in schema.items() if k == "tag"]
    got = rows(settings, db, f'SELECT *, CAST(time AS BIGINT) AS t_ns FROM "{measurement}"')
    points = {}
    for rec in got:
        rec.pop("time")
        key = (tuple(sorted((t, rec.pop(t)) for t in tags if rec.get(t))), rec.pop("t_ns"))
        points[key] = {k: v for k, v in rec.items() if v is not None and k not in tags}
    return points


async def _schema(settings: Settings, db: str, table: str) -> dict[str, str]:
    cat = Catalog.connect(settings.redis_url, settings.app_id)
    try:
        return (await cat.table_schema(db, table)).columns
    finally:
        await cat.close()


def run_cli(settings: Settings, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INFLUENT_")}
    full.update(settings.as_env())
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "influent.cli", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)


def assert_same_data(server: InfluxDB1, src: str, settings: Settings, target: str) -> None:
    for measurement in ("cpu", "mixed"):
        expected = source_points(server, src, measurement)
        got = influent_points(settings, target, measurement)
        assert len(got) == len(expected)
        assert got == expected, measurement
    cpu = asyncio.run(_schema(settings, target, "cpu"))
    assert {k for c, k in cpu.items() if c.startswith("usage_")} == {"integer"}
    mixed = asyncio.run(_schema(settings, target, "mixed"))
    assert {c: mixed[c] for c in ("f", "i", "s", "b")} == {
        "f": "float", "i": "integer", "s": "string", "b": "boolean"}


def test_migration_killed_half_way_resumes_to_the_same_data(stack, influxdb1, source_db):
    settings = stack
    target = unique("migrated")
    args = ["migrate", "influxdb1", "--url", f"http://127.0.0.1:{influxdb1.http_port}",
            "--db", source_db, "--target-db", target, "--window", "10m",
            "--batch-bytes", "20000", "--verify-timeout", "120"]
    killed = run_cli(settings, *args, env={"INFLUENT_FAILPOINT": "migrate_half_way"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    redis = __import__("redis").Redis.from_url(settings.redis_url)
    try:
        keys = redis.keys(f"{settings.app_id}:migrate:*")
        assert len(keys) == 1
        checkpointed = redis.hlen(keys[0])
    finally:
        redis.close()
    assert 0 < checkpointed < 7  # 6 ten-minute windows of cpu + 1 of mixed

    resumed = run_cli(settings, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout
    report = resumed.stdout.splitlines()
    assert report[0].split()[:2] == ["database", "measurement"]
    assert sorted(line.split()[1:5] for line in report[1:]) == [
        ["cpu", "1080", "1080", "ok"], ["mixed", "5", "5", "ok"]]
    assert "copied: 7 windows, 1,085 rows," in resumed.stderr  # earlier run's windows included
    assert_same_data(influxdb1, source_db, settings, target)


def test_influx_inspect_export_imports_to_the_same_data(stack, influxdb1, source_db, tmp_path):
    settings = stack
    root = Path(influxdb1.service.marker).parent
    export = tmp_path / "export.lp.gz"
    done = subprocess.run([ensure_influx_inspect(), "export", "-datadir", str(root / "data"),
                           "-waldir", str(root / "wal"), "-database", source_db, "-compress",
                           "-out", str(export)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    imported = run_cli(settings, "import", str(export), "--verify-timeout", "120")
    assert imported.returncode == 0, imported.stderr[-3000:] + imported.stdout
    assert "lines/s" in imported.stderr
    lines = sorted(line.split()[:5] for line in imported.stdout.splitlines()[1:])
    assert lines == [[source_db, "cpu", "1080", "1080", "ok"],
                     [source_db, "mixed", "5", "5", "ok"],
                     [f"{source_db}/rp2", "events", "2", "2", "ok"]]
    assert_same_data(influxdb1, source_db, settings, source_db)
    assert influent_points(settings, f"{source_db}/rp2", "events") == source_points(
        influxdb1, source_db, "events", rp="rp2")
