"""Answering queries over one database: for each table, the catalog's Parquet files (pruned by
the query's time range before anything is read) plus the buffer snapshots from Redis, merged and
deduplicated, handed to DataFusion as one Arrow table."""
from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from influent.model import ARROW_TYPES, FIELD_TYPES, TAG, TAG_ARROW_TYPE, TIME, TIME_ARROW_TYPE
from persist.catalog import Catalog, TableSchema
from persist.dedup import deduplicate, project_columns
from persist.engine_catalog import processing_engine_logs
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta
from persist.tokens import TokenStore, tokens_table
from query_api.pruning import UNBOUNDED, TimeRange, plan_scan_limits
from query_api import sql_guard
from query_api.snapshot_cache import SnapshotCache
from query_api.sql_guard import QueryError
from query_api.query_log import QueryLog
from query_api.system_tables import lifecycle_system_tables
from query_api.tag_filter import TagFilter, keep_matching
from topics.wire import ORDER_SEQ, ORDER_TS, decode_batches


READ_THREADS = 8


class DatabaseNotFound(LookupError):
    pass


@dataclass
class QueryStats:
    """What a query touched; exported as Prometheus counters by the API."""

    files_read: int = 0
    files_pruned: int = 0
    buffer_batches: int = 0
    rows_scanned: int = 0
    files: list[str] = field(default_factory=list)


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """The user-visible Arrow schema of a table, from the catalog's column kinds."""
    fields = []
    for name in sorted(schema.columns):
        kind = schema.columns[name]
        if kind == TAG:
            fields.append(pa.field(name, TAG_ARROW_TYPE))
        elif kind == TIME:
            fields.append(pa.field(name, TIME_ARROW_TYPE, nullable=False))
        elif kind in FIELD_TYPES:
            fields.append(pa.field(name, ARROW_TYPES[kind]))
    return pa.schema(fields)


def file_rows(table: pa.Table, meta: ParquetFileMeta) -> pa.Table:
    """Rows of a persisted file, with the file's write order (newer files win over older)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    table = pa.table(cols, names=table.column_names)
    n = table.num_rows
    return (table.append_column(ORDER_TS, pa.repeat(pa.scalar(meta.max_write_ts, pa.int64()), n))
                 .append_column(ORDER_SEQ, pa.repeat(pa.scalar(meta.max_write_seq, pa.int64()), n)))


def within(table: pa.Table, rng: TimeRange) -> pa.Table:
    """Rows inside the time range (time is part of the key, so filtering before dedup is safe)."""
    if rng == UNBOUNDED or table.num_rows == 0:
        return table
    ns = pc.cast(table.column("time"), pa.int64())
    mask = None
    if rng.lo is not None:
        mask = pc.greater_equal(ns, rng.lo)
    if rng.hi is not None:
        upper = pc.less_equal(ns, rng.hi)
        mask = upper if mask is None else pc.and_(mask, upper)
    return table.filter(mask)


def assemble_table(schema: TableSchema, parts: list[pa.Table], already_unique: bool = False
                   ) -> pa.Table:
    """Concatenate file and buffer rows (which may each lack some columns) and deduplicate.

    ``already_unique``: the rows come from one deduplicated file alone, so dedup is skipped."""
    target = arrow_schema(schema)
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return target.empty_table()
    merged = pa.concat_tables(parts, promote_options="default")
    for f in target:
        if f.name not in merged.column_names:
            merged = merged.append_column(f.name, pa.nulls(merged.num_rows, f.type))
    deduped = merged if already_unique else deduplicate(merged, schema.tags)
    return project_columns(deduped).cast(target, safe=False)


def referenced_tables(sql: str, tables: list[str]) -> list[str]:
    """Tables whose name occurs in the query text as a whole word or a quoted identifier: only
    those are loaded (a cheap superset of what the query can read)."""
    found = []
    for t in tables:
        word = re.compile(r"(?<![\w.])" + re.escape(t) + r"(?!\w)", re.IGNORECASE)
        if word.search(sql) or f'"{t}"' in sql:
            found.append(t)
    return found


def _register(ctx: datafusion.SessionContext, name: str, data: pa.Table) -> None:
    """Register ``data`` under the table's exact name: DataFusion parses the name it is given
    as SQL, so it is quoted (else ``Cpu`` would be registered as ``cpu`` and ``"Cpu"`` not
    found, and ``a.b`` read as schema ``a``)."""
    batches = data.to_batches() or [pa.RecordBatch.from_pylist([], schema=data.schema)]
    quoted = '"' + name.replace('"', '""') + '"'
    ctx.register_record_batches(quoted, [batches])


class QueryEngine:
    def __init__(self, catalog: Catalog, store: ObjectStore, snapshot_cache_bytes: int = 0):
        self.catalog = catalog
        self.store = store
        self.snapshots = SnapshotCache(catalog, snapshot_cache_bytes) if snapshot_cache_bytes > 0 else None
        self.lifecycle = LifecycleCatalog(catalog)
        self.recent = QueryLog()  # system.queries

    async def table_state(self, db: str, table: str
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[pa.Table]]:
        if self.snapshots is not None:
            return await self.snapshots.table_state(db, table)
        schema, files, raw = await self.catalog.table_state(db, table)
        return schema, files, await asyncio.to_thread(lambda: [decode_batches(s) for s in raw])

    def read_file(self, meta: ParquetFileMeta, rng: TimeRange) -> pa.Table:
        local = self.store.local_path(meta.path)
        source = local if local else pa.BufferReader(self.store.get(meta.path))
        filters = None
        if rng.lo is not None or rng.hi is not None:  # row-group statistics prune inside the file
            filters = []
            if rng.lo is not None:
                filters.append(("time", ">=", pa.scalar(rng.lo, pa.timestamp("ns"))))
            if rng.hi is not None:
                filters.append(("time", "<=", pa.scalar(rng.hi, pa.timestamp("ns"))))
        return file_rows(pq.read_table(source, filters=filters), meta)

    async def load_table(self, db: str, table: str, rng: TimeRange = UNBOUNDED,
                         stats: QueryStats | None = None, tags: TagFilter | None = None) -> pa.Table:
        """The table's deduplicated rows within ``rng`` (files outside it are never opened),
        and with the tag values ``tags`` allows (rows filtered before dedup)."""
        stats = stats if stats is not None else QueryStats()
        schema, files, snapshots = await self.table_state(db, table)
        rules = await self.lifecycle.visibility(db, table)  # retention and deletes, every path
        if rules.cutoff is not None:
            rng = rng.narrow(rules.cutoff, None)
        wanted = [m for m in files if rng.overlaps(m.min_time, m.max_time)]
        stats.files_pruned += len(files) - len(wanted)
        stats.files_read += len(wanted)
        stats.files.extend(m.path for m in wanted)
        stats.buffer_batches += len(snapshots)

        def load() -> pa.Table:
            def read(m: ParquetFileMeta) -> pa.Table:
                return rules.file_rows(self.read_file(m, rng), m.min_time, m.max_time,
                                       m.tombstone_seq)

            if len(wanted) > 4:  # many files: read them concurrently (Parquet decoding frees the GIL)
                with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
                    parts = list(pool.map(read, wanted))
            else:
                parts = [read(m) for m in wanted]
            parts += [rules.buffer_rows(within(s, rng)) for s in snapshots]
            if tags:
                parts = [keep_matching(p, tags, schema.tags) for p in parts]
            stats.rows_scanned += sum(p.num_rows for p in parts)
            return assemble_table(schema, parts, already_unique=len(wanted) == 1 and not snapshots)

        return await asyncio.to_thread(load)

    async def require_database(self, db: str) -> None:
        if not await self.catalog.has_database(db):
            raise DatabaseNotFound(f"database not found: {db}")

    async def context(self, db: str, sql: str, params: dict | None, stats: QueryStats
                      ) -> datafusion.SessionContext:
        await self.require_database(db)
        tables = referenced_tables(sql, await self.catalog.tables(db))
        schemas = {t: arrow_schema(await self.catalog.table_schema(db, t)) for t in tables}
        planner = sql_guard.new_session()
        for name, schema in schemas.items():
            _register(planner, name, schema.empty_table())
        system = await system_tables(self.catalog, db, sql, self.recent)
        register_system_tables(planner, system)
        try:
            limits = await asyncio.to_thread(plan_scan_limits, planner, sql, params)
        except QueryError:
            raise
        except Exception as exc:  # DataFusion raises plain Exceptions for user errors
            raise sql_guard.query_error(exc) from exc
        ctx = sql_guard.new_session()
        register_system_tables(ctx, system)
        for name in tables:
            rng = limits.time.get(name, UNBOUNDED)
            _register(ctx, name, await self.load_table(db, name, rng, stats, limits.tags.get(name)))
        return ctx

    async def sql_stream(self, db: str, sql: str, params: dict[str, Any] | None = None,
                         stats: QueryStats | None = None
                         ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Plan and compute the first batch now (so errors, including the time limit, surface
        before a response starts); the remaining batches are pulled as the response is
        written. Read-only and within the query limits (query_api/sql_guard.py)."""
        started = time.time()
        try:
            schema, batches = await self._sql_stream(db, sql, params, stats)
        except Exception as exc:
            self.recent.record(db, "sql", sql, started, 0, str(exc))
            raise
        return schema, self.recent.counting(db, "sql", sql, started, batches)

    async def _sql_stream(self, db: str, sql: str, params: dict[str, Any] | None,
                          stats: QueryStats | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        stats = stats if stats is not None else QueryStats()
        deadline = time.monotonic() + sql_guard.limits().timeout_s

        async def head() -> tuple[pa.Schema, datafusion.RecordBatchStream, list[pa.RecordBatch]]:
            ctx = await self.context(db, sql, params, stats)
            df = await asyncio.to_thread(sql_guard.plan, ctx, sql, params)
            stream = await sql_guard.start(df)
            first = await sql_guard.next_batch(stream)
            return df.schema(), stream, [] if first is None else [first]

        schema, stream, first = await sql_guard.within_limit(head(), deadline)
        return schema, itertools.chain(first, sql_guard.remaining(stream, deadline))

    async def sql(self, db: str, sql: str, params: dict[str, Any] | None = None,
                  stats: QueryStats | None = None) -> pa.Table:
        """The whole result as one table (Flight, plugins), read-only and within the limits."""
        started = time.time()
        try:
            table = await self._sql(db, sql, params, stats)
        except Exception as exc:
            self.recent.record(db, "sql", sql, started, 0, str(exc))
            raise
        self.recent.record(db, "sql", sql, started, table.num_rows)
        return table

    async def _sql(self, db: str, sql: str, params: dict[str, Any] | None,
                   stats: QueryStats | None) -> pa.Table:
        stats = stats if stats is not None else QueryStats()
        deadline = time.monotonic() + sql_guard.limits().timeout_s

        async def run() -> pa.Table:
            ctx = await self.context(db, sql, params, stats)
            df = await asyncio.to_thread(sql_guard.plan, ctx, sql, params)
            return await sql_guard.collect(df, deadline)

        return await sql_guard.within_limit(run(), deadline)


class EngineSource:
    """The InfluxQL executor's view of a database: catalog metadata and pruned, deduplicated
    tables from the same loading path as SQL."""

    def __init__(self, engine: QueryEngine, stats: QueryStats):
        self.engine = engine
        self.stats = stats

    async def databases(self) -> list[str]:
        return await self.engine.catalog.databases()

    async def tables(self, db: str) -> list[str]:
        return await self.engine.catalog.tables(db)

    async def schema(self, db: str, table: str) -> TableSchema:
        return await self.engine.catalog.table_schema(db, table)

    async def load(self, db: str, table: str, time_range: tuple[int | None, int | None] | None = None,
                   tags: TagFilter | None = None) -> pa.Table:
        rng = TimeRange(*time_range) if time_range else UNBOUNDED
        return await self.engine.load_table(db, table, rng, self.stats, tags)


# ---- system tables of the processing engine (processing_engine, persist/engine_catalog.py) ----


async def system_tables(catalog: Catalog, db: str, sql: str, recent: QueryLog | None = None
                        ) -> dict[str, pa.Table]:
    """The ``system.*`` tables a query names (only those are read from Redis)."""
    tables = await lifecycle_system_tables(catalog, db, sql, recent)  # query_api/system_tables.py
    if "system.processing_engine_logs" in sql.lower():
        tables["processing_engine_logs"] = await processing_engine_logs(catalog.redis, catalog.ns, db)
    if "system.tokens" in sql.lower():  # API tokens, never their secrets (persist/tokens.py)
        tables["tokens"] = tokens_table(await TokenStore(catalog.redis, catalog.ns).list())
    return tables


def register_system_tables(ctx: datafusion.SessionContext, tables: dict[str, pa.Table]) -> None:
    if not tables:
        return
    schema = datafusion.catalog.Schema.memory_schema()
    ctx.catalog().register_schema("system", schema)
    for name, table in tables.items():
        schema.register_table(name, ctx.from_arrow(table))
