"""Creating and dropping databases and tables over the catalog and object store: what
InfluxQL's CREATE/DROP DATABASE and DROP MEASUREMENT (and the configure endpoints) do.

Dropping is the same as ``DELETE /api/v3/configure/database|table``: catalog entries, buffer
snapshots and Parquet files go, and rows written before the drop stay deleted across replays.
"""
from __future__ import annotations

import asyncio
import time

from persist.catalog import Catalog, validate_db_name
from persist.continuous_queries import ContinuousQueryStore
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore
from persist.value_caches import CacheCatalog


class CatalogDatabaseAdmin:
    """:class:`query_api.influxql.management.DatabaseAdmin` over the catalog in Redis."""

    def __init__(self, catalog: Catalog, store: ObjectStore):
        self.catalog = catalog
        self.store = store

    async def create_database(self, db: str, period_ns: int | None, with_duration: bool) -> None:
        reason = validate_db_name(db)
        if reason:
            raise ValueError(reason)
        if await self.catalog.has_database(db):
            if with_duration and await self.catalog.retention(db) != period_ns:
                raise ValueError("retention policy conflicts with an existing policy")
            return
        await self.catalog.create_database(db)
        if period_ns is not None:
            await self._set_retention(db, period_ns)

    async def drop_database(self, db: str) -> None:
        """Drop ``db`` now; nothing happens when it does not exist (as in 1.x)."""
        if not await self.catalog.has_database(db):
            return
        paths = await self.catalog.delete_database(db, int(time.time() * 1000))
        await self._set_retention(db, None)
        await ContinuousQueryStore(self.catalog.redis, self.catalog.ns).drop_database(db)
        await CacheCatalog(self.catalog.redis, self.catalog.ns).drop_table(db)
        await self._remove(paths)

    async def _set_retention(self, db: str, period_ns: int | None) -> None:
        """Set (None: clear) a database's period and refresh the object-store copy that
        ``influent catalog rebuild`` restores periods from."""
        await self.catalog.set_retention(db, None, period_ns)
        await LifecycleCatalog(self.catalog).save_retention_copy(self.store)

    async def drop_measurement(self, db: str, table: str) -> None:
        """Drop one table now; nothing happens when it does not exist (as in 1.x)."""
        if table not in await self.catalog.tables(db):
            return
        await self._remove(await self.catalog.delete_table(db, table, int(time.time() * 1000)))
        await CacheCatalog(self.catalog.redis, self.catalog.ns).drop_table(db, table)

    async def retention_policies(self, db: str) -> list[tuple[str, int | None]]:
        databases = await self.catalog.databases()
        if db not in databases:
            raise LookupError(db)
        policies = [("autogen", await self.catalog.retention(db))]
        for other in databases:
            if other.startswith(db + "/"):
                policies.append((other[len(db) + 1:], await self.catalog.retention(other)))
        return policies

    async def _remove(self, paths: list[str]) -> None:
        """Delete the Parquet objects of a dropped database or table (off the event loop)."""
        await asyncio.to_thread(lambda: [self.store.delete(p) for p in paths])
