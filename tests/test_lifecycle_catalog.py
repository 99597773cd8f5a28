"""The lifecycle's Redis state against a real Redis: one lease holder per partition, a swap that
refuses a lost lease, changed inputs or claimed outputs, deletions claimed once, and tombstones
restored from their object-store copies."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import LocalStore
from persist.parquet_files import ParquetFileMeta
from persist.tombstones import Tombstone

pytestmark = pytest.mark.integration


def meta(path: str) -> ParquetFileMeta:
    return ParquetFileMeta("db", "cpu", "pk", path, path, 10, 1, 0, 1, "t", 0, 0, 0, 0, 0)


def test_leases_swaps_and_deletions(redis_url):
    async def run() -> None:
        catalog = Catalog.connect(redis_url, f"lc{uuid.uuid4().hex[:8]}")
        lc = LifecycleCatalog(catalog)
        try:
            token = await lc.acquire("db", "cpu", "pk", 30)
            assert token and await lc.acquire("db", "cpu", "pk", 30) is None  # one holder
            for p in ("a", "b"):
                await catalog.redis.hset(catalog.k_files("db", "cpu"), p, meta(p).to_json())
            later = time.time() + 60
            await lc.add_intents(["c"], later)
            event, summary = {"kind": "compacted"}, {"database": "db", "status": "done"}
            assert await lc.swap("db", "cpu", "pk", "not-mine", ["a", "b"], [meta("c")], later,
                                 event, summary) == -1
            assert await lc.swap("db", "cpu", "pk", token, ["a", "zz"], [meta("c")], later,
                                 event, summary) == 0
            assert await lc.swap("db", "cpu", "pk", token, ["a", "b"], [meta("d")], later,
                                 event, summary) == -2  # "d" was never recorded as an intent
            assert await lc.swap("db", "cpu", "pk", token, ["a", "b"], [meta("c")], later,
                                 event, summary) == 1
            assert [m.path for m in await catalog.files("db", "cpu")] == ["c"]
            assert len(await lc.outbox()) == 1 and (await lc.events())[-1]["status"] == "done"
            assert await lc.due_deletions() == []  # inside the grace period
            due = await lc.due_deletions(now=later + 1)
            assert due == ["a", "b"]
            assert await lc.due_deletions(now=later + 1) == ["a", "b"]  # claimed, not deleted yet
            for p in due:
                await lc.deleted(p)
            assert await lc.pending_deletions() == 0
            await lc.release("db", "cpu", "pk", token)
            assert await lc.acquire("db", "cpu", "pk", 30)
        finally:
            await catalog.close()

    asyncio.run(run())


def test_tombstones_restored_from_the_store(redis_url, tmp_path):
    async def run() -> None:
        ns = f"lc{uuid.uuid4().hex[:8]}"
        catalog = Catalog.connect(redis_url, ns)
        store = LocalStore(tmp_path / "objects")
        lc = LifecycleCatalog(catalog)
        try:
            await catalog.create_database("db")
            first = await lc.add_tombstone(Tombstone("db", "cpu", 0, 10, None, 5), store)
            second = await lc.add_tombstone(Tombstone("db", None, -5, 2**62, {"tag": "h", "op": "=",
                                                                               "value": "x"}, 6), store)
            assert (first.id, second.id) == (1, 2)
            await catalog.set_retention("db", None, 3600 * 10**9)
            await lc.save_retention_copy(store)
            seq, before = await lc.tombstones("db")
            await catalog.redis.delete(*[k async for k in catalog.redis.scan_iter(f"{ns}:*")])
            assert await lc.restore_tombstones(store) == 2
            assert await lc.restore_retention(store) == 1
            assert await lc.tombstones("db") == (seq, before)
            assert await catalog.retention("db") == 3600 * 10**9
            third = await lc.add_tombstone(Tombstone("db", "cpu", 0, 1, None, 7), store)
            assert third.id == 3  # the counter continues after the restored ids
            rules = await lc.visibility("db", "cpu", now_ns=4000 * 10**9)
            assert rules.cutoff == 400 * 10**9 and [t.id for t in rules.tombstones] == [1, 2, 3]
            assert [t.id for t in (await lc.visibility("db", "mem")).tombstones] == [2]
        finally:
            await catalog.close()

    asyncio.run(run())


def test_retention_of_influxql_create_database_is_restored_from_the_store(redis_url, tmp_path):
    """CREATE DATABASE ... WITH DURATION (and DROP DATABASE) keep the object-store copy current."""
    from query_api.database_admin import CatalogDatabaseAdmin

    async def run() -> None:
        ns = f"lc{uuid.uuid4().hex[:8]}"
        catalog = Catalog.connect(redis_url, ns)
        store = LocalStore(tmp_path / "objects")
        admin = CatalogDatabaseAdmin(catalog, store)
        try:
            await admin.create_database("kept", 7 * 24 * 3600 * 10**9, True)
            await admin.create_database("dropped", 3600 * 10**9, True)
            await admin.drop_database("dropped")
            await catalog.redis.delete(*[k async for k in catalog.redis.scan_iter(f"{ns}:*")])
            assert await LifecycleCatalog(catalog).restore_retention(store) == 1
            assert await catalog.retention("kept") == 7 * 24 * 3600 * 10**9
            assert await catalog.retention("dropped") is None
        finally:
            await catalog.close()

    asyncio.run(run())
