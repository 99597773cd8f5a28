"""Answering SQL over one database: buffer snapshots (and, as persistence lands, Parquet files)
handed to DataFusion as one deduplicated Arrow table per measurement."""
from __future__ import annotations

import asyncio
import re
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.parquet as pq

from persist.catalog import FIELD_TYPES, TAG, TIME, Catalog, TableSchema
from persist.dedup import deduplicate, project_columns
from topics.line_protocol import ARROW_TYPES
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta
from topics.wire import ORDER_SEQ, ORDER_TS, decode_batches


class DatabaseNotFound(LookupError):
    pass


class QueryError(ValueError):
    """A query the engine refused (bad SQL, unknown table, ...): a 400 for the client."""


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """The user-visible Arrow schema of a table, from the catalog's column kinds."""
    fields = []
    for name in sorted(schema.columns):
        kind = schema.columns[name]
        if kind == TAG:
            fields.append(pa.field(name, pa.string()))
        elif kind == TIME:
            fields.append(pa.field(name, pa.timestamp("ns"), nullable=False))
        elif kind in FIELD_TYPES:
            fields.append(pa.field(name, ARROW_TYPES[kind]))
    return pa.schema(fields)


def file_rows(table: pa.Table, meta: ParquetFileMeta) -> pa.Table:
    """Rows of a persisted file, with the file's write order (newer files win over older)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    table = pa.table(cols, names=table.column_names)
    n = table.num_rows
    return (table.append_column(ORDER_TS, pa.array([meta.max_write_ts] * n, pa.int64()))
                 .append_column(ORDER_SEQ, pa.array([meta.max_write_seq] * n, pa.int64())))


def assemble_table(schema: TableSchema, batches: list[pa.Table], already_unique: bool = False
                   ) -> pa.Table:
    """Concatenate file and buffer rows (which may each lack some columns) and deduplicate.

    ``already_unique``: the rows come from one deduplicated file alone, so dedup is skipped."""
    target = arrow_schema(schema)
    if not batches:
        return target.empty_table()
    merged = pa.concat_tables(batches, promote_options="default")
    for f in target:
        if f.name not in merged.column_names:
            merged = merged.append_column(f.name, pa.nulls(merged.num_rows, f.type))
    deduped = merged if already_unique else deduplicate(merged, schema.tags)
    return project_columns(deduped).cast(target, safe=False) if deduped.num_rows else target.empty_table()


def referenced_tables(sql: str, tables: list[str]) -> list[str]:
    """Tables whose name occurs in the query text: only those are loaded (cheap, safe superset)."""
    lowered = sql.lower()
    return [t for t in tables if t.lower() in lowered]


class QueryEngine:
    def __init__(self, catalog: Catalog, store: ObjectStore):
        self.catalog = catalog
        self.store = store

    def read_file(self, meta: ParquetFileMeta) -> pa.Table:
        local = self.store.local_path(meta.path)
        source = local if local else pa.BufferReader(self.store.get(meta.path))
        return file_rows(pq.read_table(source), meta)

    async def load_table(self, db: str, table: str) -> pa.Table:
        schema, files, snapshots = await self.catalog.table_state(db, table)

        def load() -> pa.Table:
            parts = [self.read_file(m) for m in files] + [decode_batches(s) for s in snapshots]
            return assemble_table(schema, parts, already_unique=len(files) == 1 and not snapshots)

        return await asyncio.to_thread(load)

    async def context(self, db: str, sql: str) -> datafusion.SessionContext:
        if not await self.catalog.has_database(db):
            raise DatabaseNotFound(f"database not found: {db}")
        ctx = datafusion.SessionContext()
        for table in referenced_tables(sql, await self.catalog.tables(db)):
            data = await self.load_table(db, table)
            batches = data.to_batches() or [pa.RecordBatch.from_pylist([], schema=data.schema)]
            ctx.register_record_batches(table, [batches])
        return ctx

    async def sql(self, db: str, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        ctx = await self.context(db, sql)

        def run() -> pa.Table:
            try:
                df = ctx.sql(sql, param_values=params) if params else ctx.sql(sql)
                return df.to_arrow_table()
            except Exception as exc:  # DataFusion raises plain Exceptions for user errors
                raise QueryError(_clean_error(str(exc))) from exc

        return await asyncio.to_thread(run)


def _clean_error(message: str) -> str:
    return re.sub(r"\s+", " ", message).strip()
