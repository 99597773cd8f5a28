"""One catalog round trip per InfluxQL statement (query_api/catalog_reads.py), against a real
Redis: the combined read returns what the separate reads return, and a write, a delete or a
DDL made through another connection (another process) is visible to the very next query."""
from __future__ import annotations

import asyncio
import time

import pyarrow as pa
import pytest

from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import LocalStore
from query_api.catalog_reads import read_table
from query_api.engine import EngineSource, QueryEngine, QueryStats
from query_api.influxql import execute_influxql
from tests.harness import unique
from topics.wire import encode_batch

pytestmark = pytest.mark.integration
M = 60_000_000_000
T0 = 1_700_000_000_000_000_000 // M * M
Q = (f"SELECT max(v) FROM cpu WHERE host = 'a' AND time >= {T0} AND time < {T0 + 3 * M} "
     "GROUP BY time(1m)")


def rows(*points: tuple[str, int, float]) -> bytes:
    return encode_batch(pa.table({
        "host": [p[0] for p in points],
        "time": pa.array([T0 + p[1] for p in points], pa.timestamp("ns")),
        "v": [p[2] for p in points]}))


def test_one_read_returns_what_the_separate_reads_return(redis_url):
    async def scenario() -> None:
        catalog = Catalog.connect(redis_url, unique("reads"))
        lifecycle = LifecycleCatalog(catalog)
        try:
            await catalog.ensure_columns("db", "cpu", {"host": "tag", "v": "float"})
            await catalog.ensure_columns("db", "mem", {"host": "tag", "u": "integer"})
            await catalog.put_snapshots([("db", "cpu", "0:1", rows(("a", 0, 1.0)))])
            await catalog.set_retention("db", None, 3600 * 10**9)
            read = await read_table(catalog, lifecycle, "db", "cpu")
            assert read.databases == await catalog.databases() == ["db"]
            assert read.tables == await catalog.tables("db") == ["cpu", "mem"]
            assert read.state == await catalog.table_state_sizes("db", "cpu")
            now = time.time_ns()
            assert (await lifecycle.visibility("db", "cpu", now, marks=read.marks)
                    == await lifecycle.visibility("db", "cpu", now))
            missing = await read_table(catalog, lifecycle, "nodb", "cpu")
            assert missing.tables == [] and missing.schema.columns == {} and missing.files == []
        finally:
            await catalog.close()

    asyncio.run(scenario())


def test_changes_by_another_process_are_visible_to_the_next_query(redis_url, tmp_path):
    async def scenario() -> None:
        ns = unique("reads")
        writer = Catalog.connect(redis_url, ns)  # another process's connection
        reader = Catalog.connect(redis_url, ns)
        engine = QueryEngine(reader, LocalStore(tmp_path / "objects"), 64 << 20)

        async def query(q: str = Q) -> dict:
            return await execute_influxql(q, "db", EngineSource(engine, QueryStats()),
                                          now_ns=T0 + 10 * M)

        def values(body: dict) -> list | None:
            series = body["results"][0].get("series")
            return None if series is None else [list(r) for r in series[0]["values"]]

        try:
            await writer.ensure_columns("db", "cpu", {"host": "tag", "v": "float"})
            await writer.put_snapshots([("db", "cpu", "0:1", rows(("a", 0, 1.0), ("b", 0, 9.0)))])
            assert values(await query()) == [["2023-11-14T22:13:00Z", 1],
                                             ["2023-11-14T22:14:00Z", None],
                                             ["2023-11-14T22:15:00Z", None]]
            await writer.put_snapshots([("db", "cpu", "0:2", rows(("a", M + 5, 4.5)))])
            assert values(await query())[1] == ["2023-11-14T22:14:00Z", 4.5]
            await writer.ensure_columns("db", "cpu", {"w": "integer"})  # a new column
            body = await query("SHOW FIELD KEYS FROM cpu")
            assert ["w", "integer"] in body["results"][0]["series"][0]["values"]
            await writer.delete_table("db", "cpu", int(time.time() * 1000))
            assert values(await query()) is None
            await writer.delete_database("db", int(time.time() * 1000))
            assert (await query())["results"][0]["error"] == "database not found: db"
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(scenario())
