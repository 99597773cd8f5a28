"""Row deletes end to end (real Kafka, Redis, object store): InfluxDB 2's DeleteApi, InfluxQL
DELETE and DROP SERIES hide rows in files and buffers at once, leave other series alone, let a
later write through, and stay true after a worker restart and after a catalog rebuild."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from influxdb_client import InfluxDBClient
from influxdb_client_3 import InfluxDBClient3

from influent.config import Settings
from influent.devstack import free_port, start_redis, stop
from persist.object_store import open_store
from persist.parquet_files import ParquetFileMeta
from tests.harness import produce, rows, running, start_api, unique, wait_for

pytestmark = pytest.mark.integration
BASE = 1_700_000_000_000_000_000
SEC = 1_000_000_000
PER_HOST = "SELECT host, count(*) AS n FROM cpu GROUP BY host ORDER BY host"


def counts(settings: Settings, db: str) -> dict[str, int]:
    return {r["host"]: r["n"] for r in rows(settings, db, PER_HOST)}


def influxql(settings: Settings, db: str, q: str) -> dict:
    resp = httpx.post(f"{settings.http_url}/query", data={"db": db, "q": q}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "error" not in body["results"][0], body
    return body


def test_deletes_hide_rows_everywhere_and_survive_restart_and_rebuild(kafka_bootstrap, tmp_path):
    own_redis = start_redis(tmp_path / "redis", tmp_path / "logs", free_port())
    try:
        settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
                            redis_url=own_redis.endpoint, topic_prefix=unique("del") + ".",
                            partitions=2, http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                            persist_max_rows=100, persist_max_age=3600, tick_interval=1.0,
                            compact_interval=1.0, compact_grace=1.0)
        db = unique("deletes")
        client = redis.Redis.from_url(own_redis.endpoint)
        files_key = f"{settings.app_id}:db:{db}:t:cpu:files"
        with running(settings) as run:
            persisted = "\n".join(f"cpu,host=h{h} v={i} {BASE + i * SEC}"
                                  for h in range(4) for i in range(30))
            asyncio.run(produce(settings, [persisted.encode(), f"mem,host=h0 v=1 {BASE}".encode()],
                                db, partition=0))
            wait_for(lambda: client.hlen(files_key) == 1, what="the first 120 rows in a file")
            buffered = "\n".join(f"cpu,host=h{h} v={i} {BASE + (100 + i) * SEC}"
                                 for h in range(4) for i in range(10))
            asyncio.run(produce(settings, [buffered.encode()], db, partition=0))
            wait_for(lambda: counts(settings, db) == {f"h{h}": 40 for h in range(4)}, what="all rows")

            with InfluxDBClient(url=settings.http_url, token="unused", org="o") as v2:
                v2.delete_api().delete("1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z",
                                       '_measurement="cpu" AND host="h0"', bucket=db, org="o")
            after_v2 = counts(settings, db)
            assert "h0" not in after_v2 and after_v2["h3"] == 40
            influxql(settings, db, f"DELETE FROM cpu WHERE host='h1' AND time < {BASE + 10 * SEC}")
            influxql(settings, db, "DROP SERIES FROM cpu WHERE host = 'h2'")
            expected = {"h1": 30, "h3": 40}
            assert counts(settings, db) == expected
            assert rows(settings, db, "SELECT count(*) AS n FROM mem")[0]["n"] == 1
            assert rows(settings, db, "SELECT min(v) AS lo FROM cpu WHERE host = 'h1'")[0]["lo"] == 0

            # a write after the delete is visible, even at a deleted time
            asyncio.run(produce(settings, [f"cpu,host=h0 v=99 {BASE + 5 * SEC}".encode()], db,
                                partition=1))
            expected = {"h0": 1, "h1": 30, "h3": 40}
            wait_for(lambda: counts(settings, db) == expected, what="the later write")

            run.restart_worker()  # the drain persists the buffers: deletes applied at persist
            wait_for(lambda: client.hlen(f"{settings.app_id}:db:{db}:t:cpu:buf") == 0,
                     what="buffers persisted")
            assert counts(settings, db) == expected

            # compaction materialises the tombstones: the objects themselves lose the rows
            def materialised() -> bool:
                metas = [ParquetFileMeta.from_json(v) for v in client.hgetall(files_key).values()]
                store = open_store(settings)
                objects = {o.path for o in store.list(f"{db}/cpu/")}
                return (all(m.tombstone_seq == 3 for m in metas)
                        and objects == {m.path for m in metas})
            wait_for(materialised, timeout=60, what="tombstones applied to every file")
            store = open_store(settings)
            hosts = pa.concat_tables([pq.read_table(pa.BufferReader(store.get(o.path)))
                                      .select(["host"]).cast(pa.schema([("host", pa.string())]))
                                      for o in store.list(f"{db}/cpu/")]).column("host")
            assert sorted(set(hosts.to_pylist())) == ["h0", "h1", "h3"]
            assert hosts.to_pylist().count("h0") == 1
            assert counts(settings, db) == expected

            # the system tables answer over Flight too
            with InfluxDBClient3(host=settings.http_url, token="unused", database=db) as v3:
                listed = v3.query("SELECT table_name, row_count, level FROM system.parquet_files",
                                  language="sql")
                assert sum(listed.column("row_count").to_pylist()) == 71 + 1
                recent = v3.query("SELECT query_text, success FROM system.queries", language="sql")
                assert any(PER_HOST == t for t in recent.column("query_text").to_pylist())

            # a bad predicate is a 400 naming the problem, nothing deleted
            bad = httpx.post(f"{settings.http_url}/api/v2/delete", params={"bucket": db},
                             json={"start": "1970-01-01T00:00:00Z", "stop": "2100-01-01T00:00:00Z",
                                   "predicate": 'host="h3" OR host="h1"'})
            assert bad.status_code == 400 and "only AND" in bad.json()["error"]
            field = httpx.post(f"{settings.http_url}/query",
                               data={"db": db, "q": "DELETE FROM cpu WHERE v = 1"}).json()
            assert "error" in field["results"][0]
            assert counts(settings, db) == expected

        client.flushall()
        env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-m", "influent.cli", "catalog", "rebuild"], env=env,
                             cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, check=True).stdout
        assert "3 tombstones" in out
        api = start_api(settings)
        try:
            assert counts(settings, db) == expected
        finally:
            api.stop()
    finally:
        stop(own_redis)


def test_applied_tombstones_are_purged_and_deletes_stay_true(kafka_bootstrap, tmp_path):
    """Once compaction has applied a tombstone to every file it covers and no buffered row was
    written before it, the catalog forgets it (and its object-store copy); the rows stay gone
    after a restart and a catalog rebuild, and a later delete still applies to those files."""
    own_redis = start_redis(tmp_path / "redis", tmp_path / "logs", free_port())
    try:
        settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
                            redis_url=own_redis.endpoint, topic_prefix=unique("purge") + ".",
                            partitions=2, http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                            persist_max_rows=100, persist_max_age=3600, tick_interval=1.0,
                            compact_interval=1.0, compact_grace=1.0, tombstone_min_age=0.0)
        db = unique("purge")
        client = redis.Redis.from_url(own_redis.endpoint)
        tombs_key = f"{settings.app_id}:tombstones"
        store = open_store(settings)

        def copies() -> list[str]:
            return [o.path for o in store.list("_catalog/tombstones/")]

        with running(settings) as run:
            persisted = "\n".join(f"cpu,host=h{h} v={i} {BASE + i * SEC}"
                                  for h in range(4) for i in range(30))
            asyncio.run(produce(settings, [persisted.encode()], db, partition=0))
            wait_for(lambda: client.hlen(f"{settings.app_id}:db:{db}:t:cpu:files") == 1,
                     what="120 rows in a file")
            buffered = "\n".join(f"cpu,host=h{h} v={i} {BASE + (100 + i) * SEC}"
                                 for h in range(4) for i in range(10))
            asyncio.run(produce(settings, [buffered.encode()], db, partition=0))
            wait_for(lambda: counts(settings, db) == {f"h{h}": 40 for h in range(4)}, what="all rows")
            with InfluxDBClient(url=settings.http_url, token="unused", org="o") as v2:
                v2.delete_api().delete("1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z",
                                       '_measurement="cpu" AND host="h0"', bucket=db, org="o")
            influxql(settings, db, f"DELETE FROM cpu WHERE host='h1' AND time < {BASE + 10 * SEC}")
            expected = {"h1": 30, "h2": 40, "h3": 40}
            assert counts(settings, db) == expected and client.hlen(tombs_key) == 2

            run.restart_worker()  # persists the buffers (rows written before the deletes)
            wait_for(lambda: client.hlen(tombs_key) == 0 and not copies(), timeout=240,
                     what="both tombstones purged once applied to every file")
            assert counts(settings, db) == expected
            asyncio.run(produce(settings, [f"cpu,host=h0 v=99 {BASE + 5 * SEC}".encode()], db,
                                partition=1))
            expected = {"h0": 1, "h1": 30, "h2": 40, "h3": 40}
            wait_for(lambda: counts(settings, db) == expected, what="a write after the purge")
            run.restart_worker()
            assert counts(settings, db) == expected

        client.flushall()
        out = subprocess.run([sys.executable, "-m", "influent.cli", "catalog", "rebuild"],
                             env={**settings.as_env(), "PATH": "/usr/bin:/bin"},
                             cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, check=True).stdout
        assert "0 tombstones" in out
        assert int(client.get(f"{settings.app_id}:tombstone_seq")) >= 2  # ids are not reused
        api = start_api(settings)
        try:
            assert counts(settings, db) == expected
            influxql(settings, db, "DROP SERIES FROM cpu WHERE host = 'h2'")
            del expected["h2"]
            assert counts(settings, db) == expected
        finally:
            api.stop()
    finally:
        stop(own_redis)
