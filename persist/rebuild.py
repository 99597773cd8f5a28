"""Rebuild the catalog's file records from the object store alone: every Parquet file carries
its own metadata (database, table, partition key, offsets, columns)."""
from __future__ import annotations

import asyncio
import dataclasses

from persist.catalog import Catalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta, read_meta


def file_meta(store: ObjectStore, path: str, size: int) -> ParquetFileMeta:
    local = store.local_path(path)
    meta = read_meta(local) if local else read_meta(store.get(path))
    return dataclasses.replace(meta, path=path, size=size)


async def rebuild_catalog(catalog: Catalog, store: ObjectStore) -> list[ParquetFileMeta]:
    """Register every Parquet file found in the store; returns what was registered."""
    objects = [o for o in await asyncio.to_thread(lambda: list(store.list())) if o.path.endswith(".parquet")]
    metas = []
    for obj in objects:
        meta = await asyncio.to_thread(file_meta, store, obj.path, obj.size)
        await catalog.restore_file(meta)
        metas.append(meta)
    return metas


