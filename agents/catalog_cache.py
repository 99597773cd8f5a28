"""The catalog as the ingest hot path sees it: schemas, partition templates, delete marks and
watermarks held in the worker, so a batch of messages costs one catalog round trip (the
version check) when nothing is new.

Why each cached fact is safe to reuse:
- column kinds never change while a table exists; deleting a table or database raises the
  catalog version, which drops the cache. A column another worker added is only *missing*
  from the cache, and a missing column goes to the authoritative, atomic
  :meth:`Catalog.ensure_columns` (first writer wins), so a type conflict is still decided once;
- templates and delete marks change only with a version bump;
- watermarks of a source partition only rise through a persist of that partition, which runs
  on the worker that owns it: they are loaded when the partition is taken, and they matter only
  while a replay reads offsets at or below them.
"""
from __future__ import annotations

from persist.catalog import Catalog, TableSchema
from persist.partitioning import PartitionTemplate


class CatalogCache:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.version: int | None = None
        self.schemas: dict[tuple[str, str], dict[str, str]] = {}
        self.templates: dict[tuple[str, str], PartitionTemplate] = {}
        self.deleted: dict[str, int] = {}
        self.watermarks: dict[int, dict[tuple[str, str, str], int]] = {}
        self.round_trips = 0  # catalog round trips made (for benchmarks and tests)

    async def refresh(self) -> None:
        """Check the catalog version (one round trip); on a change drop what it may invalidate."""
        self.round_trips += 1
        version = await self.catalog.version()
        if version != self.version:
            self.schemas.clear()
            self.templates.clear()
            self.deleted = await self.catalog.deletions()
            self.round_trips += 1
            self.version = version

    async def claim_columns(self, claims: dict[tuple[str, str], dict[str, str]]
                            ) -> dict[tuple[str, str], TableSchema]:
        """The write admission's claim (:class:`persist.admission.ColumnCatalog`): tables with
        a column not cached go to the catalog's atomic claim, all in one round trip."""
        out, ask = {}, {}
        for key, offered in claims.items():
            known = self.schemas.get(key)
            if known is None or any(c not in known for c in offered):
                ask[key] = offered
            else:
                out[key] = TableSchema(known)
        if ask:
            self.round_trips += 1
            for key, schema in (await self.catalog.claim_columns(ask)).items():
                self.schemas[key] = dict(schema.columns)
                out[key] = schema
        return out

    async def table_schema(self, db: str, table: str) -> TableSchema:
        """A table's schema as the catalog has it now (Telegraf JSON rendering; not cached)."""
        self.round_trips += 1
        return await self.catalog.table_schema(db, table)

    async def template(self, db: str, table: str) -> PartitionTemplate:
        found = self.templates.get((db, table))
        if found is None:
            found = self.templates[(db, table)] = await self.catalog.partition_template(db, table)
            self.round_trips += 1
        return found

    def deleted_at(self, db: str, table: str) -> int | None:
        """Rows of ``db.table`` written (ms) at or before this are deleted; None: no mark."""
        marks = [m for m in (self.deleted.get(db),
                             self.deleted.get(Catalog.deleted_table_field(db, table)))
                 if m is not None]
        return max(marks) if marks else None

    async def take_partition(self, source_partition: int) -> None:
        """Load the watermarks of a partition this worker starts to ingest."""
        self.watermarks[source_partition] = await self.catalog.partition_watermarks(source_partition)

    def watermark(self, db: str, table: str, partition_key: str, source_partition: int) -> int | None:
        return self.watermarks.get(source_partition, {}).get((db, table, partition_key))

    def highest_watermark(self, source_partition: int) -> int:
        return max(self.watermarks.get(source_partition, {}).values(), default=-1)
