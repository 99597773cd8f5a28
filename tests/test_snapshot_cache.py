"""The query API's snapshot cache against a real Redis: it returns what the plain MULTI/EXEC read
returns, fetches only new snapshots, forgets persisted ones, refetches a field rewritten with
other bytes, and stays within its byte limit."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from persist.catalog import Catalog
from query_api.snapshot_cache import SnapshotCache
from tests.harness import unique
from topics.wire import decode_batches, encode_batch

pytestmark = pytest.mark.integration


def batch(*values: float) -> bytes:
    return encode_batch(pa.table({"v": pa.array(values, pa.float64())}))


def test_cache_follows_the_snapshot_hash(redis_url):
    async def scenario() -> None:
        catalog = Catalog.connect(redis_url, unique("cache"))
        db, table = "db", "t"
        await catalog.ensure_columns(db, table, {"v": "float"})
        cache = SnapshotCache(catalog, max_bytes=10_000_000)

        async def seen() -> list[list[float]]:
            _, _, tables = await cache.table_state(db, table)
            return sorted(t.column("v").to_pylist() for t in tables)

        async def plain() -> list[list[float]]:
            _, _, raw = await catalog.table_state(db, table)
            return sorted(decode_batches(r).column("v").to_pylist() for r in raw)

        await catalog.put_snapshots([(db, table, "0:1", batch(1.0)), (db, table, "0:2", batch(2.0))])
        assert await seen() == await plain() == [[1.0], [2.0]]
        assert (cache.fetched, cache.hits) == (2, 0)
        await catalog.put_snapshots([(db, table, "0:3", batch(3.0))])
        assert await seen() == [[1.0], [2.0], [3.0]]
        assert (cache.fetched, cache.hits) == (3, 2)  # only the new one was fetched
        await catalog.redis.hdel(catalog.k_buffer(db, table), "0:1")  # persisted
        assert await seen() == await plain() == [[2.0], [3.0]]
        assert len(cache.entries) == 2
        await catalog.put_snapshots([(db, table, "0:2", batch(2.0, 2.5))])  # other bytes, same field
        assert await seen() == await plain() == [[2.0, 2.5], [3.0]]
        await catalog.close()

    asyncio.run(scenario())


def test_cache_keeps_within_its_byte_limit(redis_url):
    async def scenario() -> None:
        catalog = Catalog.connect(redis_url, unique("cache"))
        one = batch(*range(100))
        cache = SnapshotCache(catalog, max_bytes=int(len(one) * 2.5))
        await catalog.put_snapshots([("db", "t", f"0:{i}", one) for i in range(5)])
        _, _, tables = await cache.table_state("db", "t")
        assert len(tables) == 5  # every snapshot is returned, only two are kept
        assert len(cache.entries) == 2 and cache.bytes <= cache.max_bytes
        await catalog.close()

    asyncio.run(scenario())
