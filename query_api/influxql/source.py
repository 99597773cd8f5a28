"""Where InfluxQL reads data from: the :class:`InfluxQLSource` protocol and an in-memory one.

The query API implements the protocol over the catalog, buffer snapshots and Parquet files;
tests and the compatibility suite use :class:`MemorySource` over plain Arrow tables.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from persist.catalog import TableSchema
from query_api.tag_filter import TagFilter, keep_matching

TimeRange = tuple[int | None, int | None]


@runtime_checkable
class InfluxQLSource(Protocol):
    async def databases(self) -> list[str]: ...

    async def tables(self, db: str) -> list[str]: ...

    async def schema(self, db: str, table: str) -> TableSchema: ...

    async def load(self, db: str, table: str, time_range: TimeRange | None = None,
                   tags: TagFilter | None = None) -> pa.Table:
        """Deduplicated rows (tags as strings, fields, ``time`` timestamp[ns]); when
        ``time_range`` is given the source may prune to ``[min_ns, max_ns]`` (inclusive), and
        to the tag values of ``tags``, but may also return more rows, never fewer."""
        ...


_KIND_OF_TYPE = (
    (pa.types.is_floating, "float"),
    (pa.types.is_signed_integer, "integer"),
    (pa.types.is_unsigned_integer, "uinteger"),
    (pa.types.is_boolean, "boolean"),
)


def schema_from_arrow(schema: pa.Schema, tags: list[str] | None = None) -> TableSchema:
    """Column kinds from an Arrow schema: ``time`` is time, string columns are tags unless
    ``tags`` names the tag columns (then other strings are string fields)."""
    columns: dict[str, str] = {}
    for f in schema:
        if f.name == "time":
            columns[f.name] = "time"
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or (
                pa.types.is_dictionary(f.type)):
            columns[f.name] = "tag" if tags is None or f.name in tags else "string"
        else:
            for test, kind in _KIND_OF_TYPE:
                if test(f.type):
                    columns[f.name] = kind
                    break
    return TableSchema(columns)


class MemorySource:
    """Databases of Arrow tables held in memory (tests, fixtures, small embedded uses)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, tuple[TableSchema, pa.Table]]] = {}

    def add_database(self, db: str) -> None:
        self._tables.setdefault(db, {})

    def add_table(self, db: str, name: str, table: pa.Table,
                  schema: TableSchema | None = None) -> None:
        self._tables.setdefault(db, {})[name] = (schema or schema_from_arrow(table.schema), table)

    async def databases(self) -> list[str]:
        return sorted(self._tables)

    async def tables(self, db: str) -> list[str]:
        return sorted(self._tables.get(db, {}))

    async def schema(self, db: str, table: str) -> TableSchema:
        return self._tables[db][table][0]

    async def load(self, db: str, table: str, time_range: TimeRange | None = None,
                   tags: TagFilter | None = None) -> pa.Table:
        schema, data = self._tables[db][table]
        data = keep_matching(data, tags or {}, schema.tags)
        if time_range is None or data.num_rows == 0:
            return data
        lo, hi = time_range
        times = data.column("time").cast(pa.int64())
        mask = None
        if lo is not None:
            mask = pc.greater_equal(times, lo)
        if hi is not None:
            upper = pc.less_equal(times, hi)
            mask = upper if mask is None else pc.and_(mask, upper)
        return data if mask is None else data.filter(mask)
