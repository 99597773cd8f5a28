"""The query API's snapshot cache against a real Redis: it returns what the plain MULTI/EXEC read
returns, fetches only new snapshots, forgets persisted ones, refetches a field rewritten with
other bytes, and stays within its byte limit; and the hot data built on it answers as the plain
path does."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from influent.model import ORDER_SEQ, ORDER_TS
from persist.catalog import Catalog
from query_api.engine import QueryEngine
from query_api.pruning import UNBOUNDED, TimeRange
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


def rows_batch(rows: list[tuple[str, int, float]], seq: int) -> bytes:
    """A snapshot of (host, time, v) rows written at ``seq`` (later seq: later write)."""
    return encode_batch(pa.table({
        "host": [h for h, _, _ in rows], "time": pa.array([t for _, t, _ in rows], pa.timestamp("ns")),
        "v": pa.array([v for _, _, v in rows], pa.float64()),
        ORDER_TS: [seq] * len(rows), ORDER_SEQ: [seq * 1000 + i for i in range(len(rows))]}))


def test_hot_data_answers_like_the_plain_path_before_and_after_indexing(redis_url):
    """Snapshots a query meets before the background indexed them (read raw, cut to the tag
    filter and time range) and after: the same rows as the plain path, the newest write of a
    repeated key winning, a snapshot outside the time range skipped, never indexed by a
    filtered query."""
    async def scenario() -> None:
        catalog = Catalog.connect(redis_url, unique("hot"))
        db, table = "db", "t"
        await catalog.ensure_columns(db, table, {"host": "tag", "time": "time", "v": "float"})
        hot = QueryEngine(catalog, None, snapshot_cache_bytes=50_000_000)
        plain = QueryEngine(catalog, None, snapshot_cache_bytes=0)

        async def both(rng: TimeRange, tags) -> list:
            def rows(t: pa.Table) -> list:
                return sorted(zip(t.column("host").to_pylist(),
                                  t.column("time").cast(pa.int64()).to_pylist(),
                                  t.column("v").to_pylist()))

            got = rows(await hot.load_table(db, table, rng, tags=tags))
            assert got == rows(await plain.load_table(db, table, rng, tags=tags))
            return got

        one_host = {"host": frozenset({"a"})}
        await catalog.put_snapshots([(db, table, "0:1", rows_batch(
            [("a", 10, 1.0), ("b", 10, 1.0), ("a", 20, 1.0), ("a", 20, 1.5)], 1))])
        assert await both(UNBOUNDED, one_host) == [("a", 10, 1.0), ("a", 20, 1.5)]
        assert hot.hot.parts == {}  # read raw: the query did not index it
        assert await hot.index_pending() == 1
        assert len(hot.hot.parts) == 1
        assert await both(UNBOUNDED, one_host) == [("a", 10, 1.0), ("a", 20, 1.5)]
        # a later write of (a, 20), a new series, and a snapshot far outside the range
        await catalog.put_snapshots([
            (db, table, "1:1", rows_batch([("a", 20, 2.0), ("c", 20, 3.0), ("a", 30, 2.0)], 2)),
            (db, table, "2:1", rows_batch([("a", 10_000, 9.0)], 3))])
        assert await both(TimeRange(0, 25), {"host": frozenset({"a", "c"})}) == [
            ("a", 10, 1.0), ("a", 20, 2.0), ("c", 20, 3.0)]
        assert len(hot.hot.parts) == 1
        await both(UNBOUNDED, {"host": frozenset({"c"})})
        await both(UNBOUNDED, None)  # all series: the query indexes what it lacks
        assert len(hot.hot.parts) == 3
        assert await both(TimeRange(0, 25), {"host": frozenset({"a", "c"})}) == [
            ("a", 10, 1.0), ("a", 20, 2.0), ("c", 20, 3.0)]
        await catalog.close()

    asyncio.run(scenario())
