"""Everything a query of one measurement reads from the catalog, in one Redis round trip.

A SELECT over one measurement used to read the catalog five times one after the other: the
database list, the database's tables, the table's columns, its files and snapshots (one
MULTI/EXEC) and its visibility (retention period and tombstone counters). :func:`read_table`
queues all of them in one MULTI/EXEC, so they are also consistent with one another (a persist,
a DDL or a delete committing meanwhile is seen entirely or not at all), and the query API
answers every one of those reads of that statement from it.

Nothing is kept between statements or queries: every statement reads the catalog afresh, so a
write, DDL or delete by any process is visible to the next query exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass

from persist.catalog import Catalog, TableSchema
from persist.lifecycle_catalog import LifecycleCatalog
from persist.parquet_files import ParquetFileMeta


@dataclass(frozen=True)
class TableRead:
    """One statement's view of the catalog for ``db``.``table``."""

    db: str
    table: str
    databases: list[str]
    tables: list[str]
    schema: TableSchema
    files: list[ParquetFileMeta]
    sizes: dict[str, int]        # snapshot field -> size (SnapshotCache.keyed_state's ``first``)
    marks: list                  # LifecycleCatalog.visibility's ``marks``

    @property
    def state(self) -> tuple[TableSchema, list[ParquetFileMeta], dict[str, int]]:
        return self.schema, self.files, self.sizes


async def read_table(catalog: Catalog, lifecycle: LifecycleCatalog, db: str, table: str
                     ) -> TableRead:
    async with catalog.redis.pipeline(transaction=True) as pipe:
        pipe.smembers(catalog.k_dbs())
        pipe.smembers(catalog.k_tables(db))
        catalog.queue_state_sizes(pipe, db, table)
        lifecycle.queue_visibility(pipe, db, table)
        replies = await pipe.execute()
    dbs, tables, cols, files, sizes = replies[:5]
    schema, metas, field_sizes = Catalog.state_sizes(cols, files, sizes)
    return TableRead(db, table, sorted(m.decode() for m in dbs),
                     sorted(m.decode() for m in tables), schema, metas, field_sizes,
                     list(replies[5:]))
