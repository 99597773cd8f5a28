"""InfluxDB 3's soft and hard deletes of databases and tables, end to end (real Kafka, Redis,
object store): a deleted database or table is renamed ``<name>-<time>`` and hidden at once, its
name is free for new writes, its data stays until ``hard_delete_at`` and then the sweep removes
its objects and catalog entries; a catalog rebuild keeps it deleted."""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port, start_redis, stop
from persist.object_store import open_store
from tests.harness import produce, rows, running, start_api, unique, wait_for

pytestmark = pytest.mark.integration
BASE = 1_700_000_000_000_000_000
SEC = 1_000_000_000
STAMP = r"-\d{8}T\d{6}$"


def sql(settings: Settings, db: str, q: str) -> httpx.Response:
    return httpx.get(f"{settings.http_url}/api/v3/query_sql",
                     params={"db": db, "q": q, "format": "json"}, timeout=30)


def delete(settings: Settings, what: str, **params) -> httpx.Response:
    return httpx.delete(f"{settings.http_url}/api/v3/configure/{what}", params=params, timeout=30)


def test_soft_delete_hides_renames_frees_the_name_and_hard_deletes_later(kafka_bootstrap, tmp_path):
    own_redis = start_redis(tmp_path / "redis", tmp_path / "logs", free_port())
    try:
        settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
                            redis_url=own_redis.endpoint, topic_prefix=unique("soft") + ".",
                            partitions=2, http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                            persist_max_rows=50, persist_max_age=3600, tick_interval=1.0,
                            compact_interval=1.0, compact_grace=1.0)
        db, other = unique("soft"), unique("other")
        client = redis.Redis.from_url(own_redis.endpoint)
        store = open_store(settings)
        with running(settings):
            data = "\n".join(f"cpu,host=h{i % 2} v={i} {BASE + i * SEC}" for i in range(60))
            asyncio.run(produce(settings, [data.encode(), f"mem,host=a v=1 {BASE}".encode(),
                                           f"keep,host=a v=1 {BASE}".encode()], db, partition=0))
            xs = "\n".join(f"x v={i} {BASE + i * SEC}" for i in range(60))
            asyncio.run(produce(settings, [xs.encode()], other, partition=1))
            wait_for(lambda: len(rows(settings, db, "SELECT * FROM cpu")) == 60, what="cpu rows")
            wait_for(lambda: len(rows(settings, other, "SELECT * FROM x")) == 60, what="other db")
            old_files = [o.path for o in store.list(f"{db}/cpu/")]
            assert old_files  # 50 rows persisted, 10 buffered

            # a table: hidden and renamed, its name free at once, its data kept
            assert delete(settings, "table", db=db, table="mem").status_code == 200
            assert sql(settings, db, "SELECT * FROM mem").status_code in (400, 404)
            listed = rows(settings, db, "SELECT table_name, deleted, hard_deletion_date "
                                        "FROM system.tables ORDER BY table_name")
            gone = [r for r in listed if r["deleted"]]
            assert len(gone) == 1 and re.match(r"mem" + STAMP, gone[0]["table_name"])
            assert gone[0]["hard_deletion_date"]  # 72 h from now by default
            assert {r["table_name"] for r in listed if not r["deleted"]} == {"cpu", "keep"}
            asyncio.run(produce(settings, [f"mem,host=b v=2 {BASE + SEC}".encode()], db, partition=1))
            wait_for(lambda: rows(settings, db, "SELECT host FROM mem") == [{"host": "b"}],
                     what="a new mem table")

            # a database: the same, and writes to its new name are refused
            assert delete(settings, "database", db=db, hard_delete_at="bad").status_code == 400
            assert delete(settings, "database", db=db).status_code == 200
            assert sql(settings, db, "SELECT * FROM cpu").status_code == 404
            assert db not in httpx.get(f"{settings.http_url}/api/v3/configure/database").text
            shown = httpx.get(f"{settings.http_url}/api/v3/configure/database",
                              params={"show_deleted": "true", "format": "json"}).json()
            renamed = [r["iox::database"] for r in shown if r["deleted"]]
            assert len(renamed) == 1 and re.match(re.escape(db) + STAMP, renamed[0])
            renamed = renamed[0]
            seen = rows(settings, other, "SELECT database_name, deleted FROM system.databases")
            assert {"database_name": renamed, "deleted": True} in seen
            assert {"database_name": other, "deleted": False} in seen
            refused = httpx.post(f"{settings.http_url}/api/v3/write_lp", params={"db": renamed},
                                 content=b"cpu v=1")
            assert refused.status_code == 400 and "deleted" in refused.text
            assert all(store.local_path(p) and Path(store.local_path(p)).exists() for p in old_files)
            asyncio.run(produce(settings, [f"cpu,host=new v=1 {BASE}".encode()], db, partition=1))
            wait_for(lambda: rows(settings, db, "SELECT host FROM cpu") == [{"host": "new"}],
                     what="a new database of the same name, only the new row")

            # deleting it again changes nothing (409) unless a new hard-delete time is given;
            # one in the past lets the sweep remove its objects and catalog entries
            assert delete(settings, "database", db=renamed).status_code == 409
            assert delete(settings, "database", db=renamed,
                          hard_delete_at="2020-01-01T00:00:00Z").status_code == 200
            wait_for(lambda: not any(Path(store.local_path(p)).exists() for p in old_files)
                     and not client.hexists(f"{settings.app_id}:soft_deleted", renamed),
                     timeout=60, what="the hard delete by the sweep")
            assert not client.exists(f"{settings.app_id}:db:{renamed}:t:cpu:files")
            assert rows(settings, db, "SELECT host FROM cpu") == [{"host": "new"}]
            assert rows(settings, other, "SELECT count(*) AS n FROM x")[0]["n"] == 60

            # a soft-deleted table with a file stays deleted through a catalog rebuild
            assert list(store.list(f"{other}/x/"))
            assert delete(settings, "table", db=other, table="x").status_code == 200
            asyncio.run(produce(settings, [f"x v=-1 {BASE}".encode()], other, partition=1))
            wait_for(lambda: rows(settings, other, "SELECT v FROM x") == [{"v": -1.0}],
                     what="a new x table")
        client.flushall()
        subprocess.run([sys.executable, "-m", "influent.cli", "catalog", "rebuild"],
                       env={**settings.as_env(), "PATH": "/usr/bin:/bin"},
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                       check=True)
        api = start_api(settings)
        try:
            assert rows(settings, other, "SELECT v FROM x") == [{"v": -1.0}]
            tables = rows(settings, other, "SELECT table_name, deleted FROM system.tables")
            assert sorted((t["table_name"][:2], t["deleted"]) for t in tables) == [
                ("x", False), ("x-", True)]
        finally:
            api.stop()
    finally:
        stop(own_redis)
