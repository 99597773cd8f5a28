"""Rebuild the catalog's file records from the object store alone: every Parquet file carries
its own metadata (database, table, partition key, offsets, columns)."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from persist.catalog import Catalog
from persist.lifecycle_catalog import CATALOG_PREFIX, LifecycleCatalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta, read_meta
from persist.soft_deletes import SoftDeletes, owner


def file_meta(store: ObjectStore, path: str, size: int) -> ParquetFileMeta:
    local = store.local_path(path)
    meta = read_meta(local) if local else read_meta(store.get(path))
    return dataclasses.replace(meta, path=path, size=size)


async def rebuild_catalog(catalog: Catalog, store: ObjectStore) -> list[ParquetFileMeta]:
    """Register every Parquet file found in the store; returns what was registered.

    A file that a compaction output names in ``replaces`` is not registered (its rows are in
    the output) but queued for deletion, as the compaction that replaced it had done."""
    objects = [o for o in await asyncio.to_thread(lambda: list(store.list()))
               if o.path.endswith(".parquet") and not o.path.startswith(CATALOG_PREFIX)]
    found = [await asyncio.to_thread(file_meta, store, obj.path, obj.size) for obj in objects]
    replaced = {path for meta in found for path in meta.replaces}
    soft = SoftDeletes(catalog, store)
    gone = await soft.restore()  # soft-deleted: their files go back under the new names
    metas = []
    for meta in found:
        if meta.path in replaced:
            continue
        meta = owner(gone, meta)
        await catalog.restore_file(meta)
        metas.append(meta)
    await soft.hide_restored(gone)
    lifecycle = LifecycleCatalog(catalog)
    await lifecycle.queue_deletion(sorted(replaced & {m.path for m in found}), time.time())
    await lifecycle.raise_tombstone_seq(max((m.tombstone_seq for m in metas), default=0))
    return metas


async def rebuild_lifecycle(catalog: Catalog, store: ObjectStore) -> tuple[int, int]:
    """Restore tombstones and retention periods from their object-store copies."""
    lifecycle = LifecycleCatalog(catalog)
    return await lifecycle.restore_tombstones(store), await lifecycle.restore_retention(store)


