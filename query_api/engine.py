"""Answering SQL over one database: buffer snapshots (and, as persistence lands, Parquet files)
handed to DataFusion as one deduplicated Arrow table per measurement."""
from __future__ import annotations

import asyncio
import re
from typing import Any

import datafusion
import pyarrow as pa

from persist.catalog import FIELD_TYPES, TAG, TIME, Catalog, TableSchema
from query_api.dedup import deduplicate, project_columns
from topics.line_protocol import ARROW_TYPES
from topics.wire import decode_batches


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


def assemble_table(schema: TableSchema, batches: list[pa.Table]) -> pa.Table:
    """Concatenate buffered batches (which may each lack some columns) and deduplicate."""
    target = arrow_schema(schema)
    if not batches:
        return target.empty_table()
    merged = pa.concat_tables(batches, promote_options="default")
    for f in target:
        if f.name not in merged.column_names:
            merged = merged.append_column(f.name, pa.nulls(merged.num_rows, f.type))
    deduped = deduplicate(merged, schema.tags)
    return project_columns(deduped).cast(target, safe=False) if deduped.num_rows else target.empty_table()


def referenced_tables(sql: str, tables: list[str]) -> list[str]:
    """Tables whose name occurs in the query text: only those are loaded (cheap, safe superset)."""
    lowered = sql.lower()
    return [t for t in tables if t.lower() in lowered]


class QueryEngine:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    async def load_table(self, db: str, table: str) -> pa.Table:
        schema = await self.catalog.table_schema(db, table)
        snapshots = await self.catalog.snapshots(db, table)
        return await asyncio.to_thread(
            lambda: assemble_table(schema, [decode_batches(s) for s in snapshots]))

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
