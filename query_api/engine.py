"""Answering queries over one database: for each table, the catalog's Parquet files (pruned by
the query's time range before anything is read) plus the buffer snapshots from Redis, merged and
deduplicated, handed to DataFusion as one Arrow table."""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import threading
from collections import OrderedDict
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from influent.model import (ARROW_TYPES, FIELD_TYPES, INTERNAL_COLUMNS, TAG, TAG_ARROW_TYPE, TIME,
                           TIME_ARROW_TYPE, TIME_COLUMN)
from persist.catalog import Catalog, TableSchema
from persist.dedup import deduplicate, project_columns
from persist.engine_catalog import processing_engine_logs
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta, with_write_order
from persist.tokens import TokenStore, tokens_table
from query_api.cache_feed import ValueCaches
from query_api.catalog_reads import TableRead, read_table
from query_api.influxql.cached_reads import NewestRows
from query_api.cache_queries import (cache_system_tables, covering_distinct_rows,
                                     covering_newest_rows, prepare_cache_calls,
                                     register_cache_functions, without_cache_calls)
from query_api.hot_data import HotPart, HotParts, select
from query_api.pruning import UNBOUNDED, TimeRange, plan_scan_limits
from query_api import sql_guard
from query_api.snapshot_cache import SnapshotCache
from query_api.sql_guard import QueryError
from query_api.query_log import QueryLog
from query_api.system_tables import lifecycle_system_tables
from query_api.tag_filter import TagFilter, keep_matching
from topics.wire import decode_batches


READ_THREADS = 8
WARM_QUEUE = 4096  # parts waiting to be indexed in the background (the oldest are dropped)
INLINE_RAW = 4  # a tag-filtered query cuts up to this many snapshots not indexed on the loop
#: Largest part a tag-filtered query reads raw while it waits to be indexed; a larger one (a
#: persisted or compacted file) is indexed by the query itself, once: cutting 700 000 raw rows
#: on every query until the background got to it cost ~130 ms per query (make bench).
RAW_ROWS = 50_000
log = logging.getLogger("influent.api")


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


_ARROW_SCHEMAS: dict[frozenset, pa.Schema] = {}


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """The user-visible Arrow schema of a table, from the catalog's column kinds (memoised:
    every query of a table builds the same one, and pyarrow schemas are immutable)."""
    key = frozenset(schema.columns.items())
    found = _ARROW_SCHEMAS.get(key)
    if found is None:
        if len(_ARROW_SCHEMAS) >= 10_000:
            _ARROW_SCHEMAS.clear()
        found = _ARROW_SCHEMAS[key] = _arrow_schema(schema)
    return found


def _arrow_schema(schema: TableSchema) -> pa.Schema:
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
    """Rows of a persisted file, with their write order (persist/parquet_files.py)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return with_write_order(pa.table(cols, names=table.column_names), meta)


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


def _overlaps(table: pa.Table, rng: TimeRange) -> bool:
    """Whether any row of ``table`` lies in the time range."""
    if table.num_rows == 0:
        return False
    if rng == UNBOUNDED:
        return True
    bounds = pc.min_max(table.column("time"))
    lo, hi = bounds["min"].value, bounds["max"].value
    return (rng.lo is None or hi >= rng.lo) and (rng.hi is None or lo <= rng.hi)


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


def _narrow(table: pa.Table, schema: TableSchema) -> pa.Table:
    """The columns of ``table`` that ``schema`` names, with the write-order columns."""
    return table.select([c for c in table.column_names
                         if c in schema.columns or c in INTERNAL_COLUMNS])


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
        self.hot = HotParts(snapshot_cache_bytes) if snapshot_cache_bytes > 0 else None
        # work for keep_warm, from queries: key -> a function to run in a thread (index a
        # part a query read raw, sort the rows of a part a query took out of order)
        self.warm_queue: OrderedDict[tuple, Any] = OrderedDict()
        self.warm_lock = threading.Lock()
        self.warm_wanted: asyncio.Event | None = None  # set: keep_warm has work
        self.warm_loop: asyncio.AbstractEventLoop | None = None
        self.lifecycle = LifecycleCatalog(catalog)
        self.recent = QueryLog()  # system.queries
        self.caches: ValueCaches | None = None  # last/distinct value caches (query_api/cache_feed.py)

    async def table_state(self, db: str, table: str
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[pa.Table]]:
        schema, files, keyed = await self.keyed_state(db, table)
        return schema, files, [data for _, data in keyed]

    async def keyed_state(self, db: str, table: str, read: TableRead | None = None
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[tuple[Any, pa.Table]]]:
        """Schema, files and buffer snapshots, each snapshot with its cache key (None when
        it has none); ``read``: the statement's catalog read (query_api/catalog_reads.py)."""
        if self.snapshots is not None:
            return await self.snapshots.keyed_state(db, table, read.state if read else None)
        schema, files, raw = await self.catalog.table_state(db, table)
        return schema, files, await asyncio.to_thread(lambda: [(None, decode_batches(s))
                                                               for s in raw])

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
                         stats: QueryStats | None = None, tags: TagFilter | None = None,
                         read: TableRead | None = None,
                         columns: frozenset[str] | None = None) -> pa.Table:
        """The table's deduplicated rows within ``rng`` (files outside it are never opened),
        and with the tag values ``tags`` allows (rows filtered before dedup). ``read``: the
        statement's catalog read of this table, when it made one (one round trip for all).
        ``columns``: the caller reads only these (and ``time``); hot data then assembles
        only them (other paths may return more columns)."""
        stats = stats if stats is not None else QueryStats()
        schema, files, keyed = await self.keyed_state(db, table, read)
        snapshots = [data for _, data in keyed]
        rules = await self.lifecycle.visibility(  # retention and deletes, every path
            db, table, marks=read.marks if read is not None else None)
        if rules.cutoff is not None:
            rng = rng.narrow(rules.cutoff, None)
        wanted = [m for m in files if rng.overlaps(m.min_time, m.max_time)]
        stats.files_pruned += len(files) - len(wanted)
        stats.files_read += len(wanted)
        stats.files.extend(m.path for m in wanted)
        stats.buffer_batches += len(snapshots)
        if (self.hot is not None and not rules.tombstones
                and all(key is not None for key, _ in keyed)):
            # the retention cutoff is already in ``rng``; tombstones take the path below
            held = self.hot.held(self._part_keys(wanted, keyed))
            usable = any(c in schema.tags for c in (tags or {}))
            raw_small = all(data.num_rows <= RAW_ROWS for (_, data), ready
                            in zip(keyed, held[len(wanted):]) if not ready)
            if tags and all(held) or (usable and all(held[:len(wanted)]) and raw_small
                                      and held.count(False) <= INLINE_RAW):
                # a few series' ranges of indexed parts and a few small raw snapshots: less
                # work than a thread hop
                return self._load_hot(schema, wanted, keyed, rng, tags, stats, columns)
            return await asyncio.to_thread(self._load_hot, schema, wanted, keyed, rng, tags,
                                           stats, columns)

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

    @staticmethod
    def _part_keys(files: list[ParquetFileMeta], snapshots: list[tuple[Any, pa.Table]]
                   ) -> list[tuple]:
        return ([("file", m.path, m.size, m.rows, m.max_offset) for m in files]
                + [("buffer",) + key for key, _ in snapshots])

    def _index_later(self, key: tuple, load, tags: list[str], unique: bool) -> None:
        """Have :meth:`keep_warm` index a part a query read raw (from any thread); a part
        asked for by a query for a few series has its rows sorted at once."""
        assert self.hot is not None
        hot = self.hot

        def build() -> None:
            if not hot.held([key])[0]:
                hot.part(key, load, tags, unique, True)

        self._later(key, build)

    def _later(self, key: tuple, job) -> None:
        with self.warm_lock:
            if key in self.warm_queue:
                return
            self.warm_queue[key] = job
            while len(self.warm_queue) > WARM_QUEUE:
                self.warm_queue.popitem(last=False)
        if self.warm_loop is not None and self.warm_wanted is not None:
            self.warm_loop.call_soon_threadsafe(self.warm_wanted.set)

    async def keep_warm(self) -> None:
        """Forever: index the parts queries read raw (query_api/hot_data.py), each as soon as
        a query met it, and sort the rows of parts a query for a few series took out of order;
        one job per thread hop, so the event loop serves queries in between. It reads nothing
        from Redis: the work comes with the queries, and parts no query touches (new data
        outside every query's time range) are never indexed."""
        self.warm_loop = asyncio.get_running_loop()
        self.warm_wanted = asyncio.Event()
        while True:
            await self.warm_wanted.wait()
            self.warm_wanted.clear()
            await self.index_pending()

    async def index_pending(self) -> int:
        """Run the work queued by queries, one job per thread hop; how many jobs ran."""
        done = 0
        while True:
            with self.warm_lock:
                if not self.warm_queue:
                    return done
                key, job = self.warm_queue.popitem(last=False)
            try:
                await asyncio.to_thread(job)
                done += 1
            except Exception:  # a file removed by compaction meanwhile: a later query asks again
                log.debug("indexing %s failed", key, exc_info=True)

    def _load_hot(self, schema: TableSchema, files: list[ParquetFileMeta],
                  snapshots: list[tuple[Any, pa.Table]], rng: TimeRange,
                  tags: TagFilter | None, stats: QueryStats,
                  columns: frozenset[str] | None = None) -> pa.Table:
        """:meth:`load_table` from the hot parts (query_api/hot_data.py); with ``columns``,
        only those and ``time`` (pieces to merge keep every tag: the series key).

        A query never waits for a part to be indexed when it has a tag filter: a part not
        indexed yet is read as it is, cut to the time range and the filter, and merged with
        whatever it may overlap (query_api/hot_data.py, ``select``); :meth:`keep_warm` indexes
        it afterwards. Without a filter (all series) the query indexes the part itself, or
        waits for the build under way. A snapshot wholly outside the time range is skipped
        without being indexed."""
        assert self.hot is not None
        names = schema.tags
        usable = {c: v for c, v in (tags or {}).items() if c in names}
        parts: list[HotPart] = []
        raw: list[tuple[pa.Table, bool]] = []
        for meta, key in zip(files, self._part_keys(files, [])):
            found = self.hot.get(key)
            load = functools.partial(self.read_file, meta, UNBOUNDED)
            if found is not None:
                parts.append(found)
            elif usable and meta.rows <= RAW_ROWS:
                raw.append((keep_matching(within(self.read_file(meta, rng), rng), usable, names),
                            True))
                self._index_later(key, load, names, True)
            else:
                parts.append(self.hot.part(key, load, names, unique=True))
        for key, data in snapshots:
            key = ("buffer",) + key
            found = self.hot.get(key)
            if found is not None:
                parts.append(found)
            elif not _overlaps(data, rng):
                continue
            elif usable and data.num_rows <= RAW_ROWS:
                raw.append((keep_matching(within(data, rng), usable, names), False))
                self._index_later(key, lambda d=data: d, names, False)
            else:
                parts.append(self.hot.part(key, lambda d=data: d, names, unique=False))
        # the series matching the filter, read after the parts: every series of a part
        # taken above is registered by now
        chosen = select(parts, rng.lo, rng.hi,
                        self.hot.registry.matching(usable) if usable else None, raw)
        stats.rows_scanned += chosen.rows
        for part in chosen.unsorted:  # taken out of order: sort its rows in the background
            self._later(("sort", id(part)), part.sorted)
        merge_schema = out_schema = schema
        overlapping, unique = chosen.overlapping, chosen.unique
        if columns is not None:
            wanted = columns | {TIME_COLUMN}
            merge_schema = TableSchema({c: k for c, k in schema.columns.items()
                                        if c in wanted or k == TAG})
            out_schema = TableSchema({c: k for c, k in schema.columns.items() if c in wanted})
            overlapping = [_narrow(t, merge_schema) for t in overlapping]
            unique = [_narrow(t, out_schema) for t in unique]
        merged = [assemble_table(merge_schema, overlapping)] if overlapping else []
        if columns is not None:
            merged = [_narrow(t, out_schema) for t in merged]
        return assemble_table(out_schema, merged + unique, already_unique=True)

    async def require_database(self, db: str) -> None:
        if not await self.catalog.has_database(db):
            raise DatabaseNotFound(f"database not found: {db}")

    async def context(self, db: str, sql: str, params: dict | None, stats: QueryStats
                      ) -> datafusion.SessionContext:
        await self.require_database(db)
        try:
            await prepare_cache_calls(self.caches, db, sql)
        except LookupError as exc:
            raise QueryError(str(exc.args[0] if exc.args else exc)) from exc
        tables = referenced_tables(without_cache_calls(sql), await self.catalog.tables(db))
        schemas = {t: arrow_schema(await self.catalog.table_schema(db, t)) for t in tables}
        planner = sql_guard.new_session()
        for name, schema in schemas.items():
            _register(planner, name, schema.empty_table())
        system = await system_tables(self.catalog, db, sql, self.recent)
        if self.caches is not None:
            system.update(await cache_system_tables(self.caches.definitions, db, sql))
        register_system_tables(planner, system)
        register_cache_functions(planner, self.caches, db)
        try:
            limits = await asyncio.to_thread(plan_scan_limits, planner, sql, params)
        except QueryError:
            raise
        except Exception as exc:  # DataFusion raises plain Exceptions for user errors
            raise sql_guard.query_error(exc) from exc
        ctx = sql_guard.new_session()
        register_system_tables(ctx, system)
        register_cache_functions(ctx, self.caches, db)
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
    tables from the same loading path as SQL.

    :meth:`prefetch` reads everything a statement over one measurement needs from the catalog
    in one round trip (query_api/catalog_reads.py); until :meth:`forget` the reads of that
    database and table are answered from it, the table's state once."""

    def __init__(self, engine: QueryEngine, stats: QueryStats):
        self.engine = engine
        self.stats = stats
        self.read: TableRead | None = None

    async def prefetch(self, db: str, table: str) -> None:
        self.read = await read_table(self.engine.catalog, self.engine.lifecycle, db, table)

    def forget(self) -> None:
        self.read = None

    async def databases(self) -> list[str]:
        if self.read is not None:
            return list(self.read.databases)
        return await self.engine.catalog.databases()

    async def tables(self, db: str) -> list[str]:
        if self.read is not None and self.read.db == db:
            return list(self.read.tables)
        return await self.engine.catalog.tables(db)

    async def schema(self, db: str, table: str) -> TableSchema:
        if self.read is not None and (self.read.db, self.read.table) == (db, table):
            return self.read.schema
        return await self.engine.catalog.table_schema(db, table)

    async def load(self, db: str, table: str, time_range: tuple[int | None, int | None] | None = None,
                   tags: TagFilter | None = None) -> pa.Table:
        rng = TimeRange(*time_range) if time_range else UNBOUNDED
        read = self.read if self.read is not None and (self.read.db, self.read.table) == (
            db, table) else None
        if read is not None:
            self.read = None  # the table's state is used once; later reads go to the catalog
        return await self.engine.load_table(db, table, rng, self.stats, tags, read)

    async def load_columns(self, db: str, table: str,
                           time_range: tuple[int | None, int | None] | None,
                           tags: TagFilter | None, columns: frozenset[str]) -> pa.Table:
        """:meth:`load` for a caller that reads only ``columns`` (and ``time``): the hot data
        path assembles only those (others may return more)."""
        rng = TimeRange(*time_range) if time_range else UNBOUNDED
        read = self.read if self.read is not None and (self.read.db, self.read.table) == (
            db, table) else None
        if read is not None:
            self.read = None
        return await self.engine.load_table(db, table, rng, self.stats, tags, read, columns)

    async def newest_rows(self, db: str, table: str, wanted: NewestRows) -> pa.Table | None:
        """Newest rows per group from a covering last value cache (query_api/cache_queries.py)."""
        caches = self.engine.caches
        if caches is None or not caches.table_caches(db, table):
            return None
        schema = await self.schema(db, table)
        rules = await self.engine.lifecycle.visibility(db, table)
        if caches.settled(db, table):  # nothing to merge: a few lookups, no thread hop
            rows = covering_newest_rows(caches, db, table, schema, rules, wanted)
        else:
            rows = await asyncio.to_thread(covering_newest_rows, caches, db, table, schema,
                                           rules, wanted)
        return None if rows is None else _as_table_types(rows, schema)

    async def distinct_rows(self, db: str, table: str, keys: list[str]) -> pa.Table | None:
        """Every combination of ``keys`` from a covering distinct value cache."""
        caches = self.engine.caches
        if caches is None or not caches.table_caches(db, table):
            return None
        rules = await self.engine.lifecycle.visibility(db, table)
        return await asyncio.to_thread(covering_distinct_rows, caches, db, table, rules, keys)


#: the last few conversions of cached rows: (rows, target schema, converted); a last cache
#: hands out the same rows object until they change
_TYPED: list[tuple[pa.Table, pa.Schema, pa.Table]] = []


def _as_table_types(rows: pa.Table, schema: TableSchema) -> pa.Table:
    """Cached rows with the columns and types a loaded table has (arrow_schema)."""
    target = arrow_schema(schema)
    if rows.schema.equals(target):
        return rows
    for source, typed_for, typed in _TYPED:
        if source is rows and typed_for.equals(target):
            return typed
    typed = pa.table([rows.column(f.name).cast(f.type) if f.name in rows.column_names
                      else pa.nulls(rows.num_rows, f.type) for f in target], schema=target)
    _TYPED[:] = [(rows, target, typed)] + _TYPED[:7]
    return typed


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
