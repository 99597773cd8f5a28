"""Soft and hard deletes of databases and tables, as InfluxDB 3 does them.

A soft delete renames the database (or table) to ``<name>-<YYYYMMDDTHHMMSS>`` (the deletion
time, UTC), hides it from listings, queries and writes, and frees its name at once: a later
write creates a new, empty database or table. Its files and buffered rows stay under the new
name until its hard-delete time (``hard_delete_at``: a time, ``never``, or by default
``INFLUENT_HARD_DELETE_DEFAULT`` seconds after the delete); the compactor's sweep then removes
its objects and catalog entries.

Redis (beside persist/catalog.py): ``<ns>:soft_deleted`` hash ``<db>`` or ``<db>␟<table>``
(the new names) -> record JSON. Each record also has a copy in the object store
(``_catalog/soft_deleted/``), so ``influent catalog rebuild`` puts the files of a soft-deleted
database or table back under its new name instead of the old one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from influent.model import KEY_SEPARATOR
from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta

SOFT_DELETED_PREFIX = "_catalog/soft_deleted/"
DELETED_NAME = re.compile(r"-\d{8}T\d{6}(-\d+)?$")


class HardDeleteTimeError(ValueError):
    """A ``hard_delete_at`` that is not ``now``, ``never``, ``default`` or an RFC 3339 time."""


@dataclass(frozen=True)
class SoftDeleted:
    """One soft-deleted database (``table`` None) or table, under its new name."""

    database: str                 # the database's current name (renamed for a database delete)
    table: str | None             # the table's new name; None for a whole database
    original: str                 # the name before the delete (database or table)
    deleted_at_ms: int
    hard_delete_at_ms: int | None  # None: never
    tables: list[str] = field(default_factory=list)  # a database's tables when deleted

    @property
    def key(self) -> str:
        return self.database if self.table is None else f"{self.database}{KEY_SEPARATOR}{self.table}"

    @property
    def name(self) -> str:
        return self.database if self.table is None else self.table

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "SoftDeleted":
        return cls(**json.loads(text))

    def due(self, now_ms: int) -> bool:
        return self.hard_delete_at_ms is not None and self.hard_delete_at_ms <= now_ms

    def owns(self, meta: ParquetFileMeta) -> bool:
        """Whether a file found in the object store belongs here (catalog rebuild): same old
        name, and written before the delete (a file of the new namesake is newer)."""
        if meta.max_write_ts > self.deleted_at_ms:
            return False
        if self.table is None:
            return meta.database == self.original
        return meta.database == self.database and meta.table == self.original


def deleted_name(name: str, deleted_at_ms: int) -> str:
    stamp = datetime.fromtimestamp(deleted_at_ms / 1000, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{name}-{stamp}"


def parse_hard_delete_at(text: str | None, now_ms: int, default_s: float) -> tuple[int | None, bool]:
    """(hard-delete time in ms or None for never, whether it was ``now``)."""
    value = (text or "default").strip()
    if value == "default":
        return now_ms + int(default_s * 1000), False
    if value == "never":
        return None, False
    if value == "now":
        return now_ms, True
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HardDeleteTimeError(f"invalid hard_delete_at {value!r}: use now, never, default "
                                  "or an RFC 3339 time") from exc
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return int(at.timestamp() * 1000), False


def format_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class SoftDeletes:
    def __init__(self, catalog: Catalog, store: ObjectStore | None = None):
        self.catalog = catalog
        self.redis = catalog.redis
        self.store = store

    def k_soft_deleted(self) -> str:
        return f"{self.catalog.ns}:soft_deleted"

    # ---- reading --------------------------------------------------------------------------
    async def records(self) -> list[SoftDeleted]:
        raw = await self.redis.hvals(self.k_soft_deleted())
        return sorted((SoftDeleted.from_json(v) for v in raw), key=lambda r: r.key)

    async def record(self, db: str, table: str | None = None) -> SoftDeleted | None:
        key = db if table is None else f"{db}{KEY_SEPARATOR}{table}"
        raw = await self.redis.hget(self.k_soft_deleted(), key)
        return SoftDeleted.from_json(raw) if raw else None

    async def is_deleted_database(self, db: str) -> bool:
        """Whether ``db`` names a soft-deleted database (only names that look like one are
        looked up, so writes to ordinary names cost nothing)."""
        return bool(DELETED_NAME.search(db)) and bool(
            await self.redis.hexists(self.k_soft_deleted(), db))

    # ---- soft delete ----------------------------------------------------------------------
    async def _free_name(self, name: str, now_ms: int, taken) -> str:
        candidate, n = deleted_name(name, now_ms), 1
        while await taken(candidate):
            n += 1
            candidate = f"{deleted_name(name, now_ms)}-{n}"
        return candidate

    async def soft_delete_database(self, db: str, hard_delete_at_ms: int | None,
                                   now_ms: int | None = None) -> SoftDeleted:
        """Rename ``db`` and hide it, in one MULTI/EXEC; rows written to ``db`` before now stay
        deleted under the old name (buffers, replays), as with a hard delete."""
        cat = self.catalog
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms

        async def taken(name: str) -> bool:
            return await cat.has_database(name) or await self.record(name) is not None

        new = await self._free_name(db, now_ms, taken)
        tables = await cat.tables(db)
        moves = [(cat.k_tables(db), cat.k_tables(new))]
        for t in tables:
            moves += [(cat.k_columns(db, t), cat.k_columns(new, t)),
                      (cat.k_files(db, t), cat.k_files(new, t)),
                      (cat.k_buffer(db, t), cat.k_buffer(new, t))]
        record = SoftDeleted(new, None, db, now_ms, hard_delete_at_ms, tables)
        await self._apply(record, moves, [db] + [f"{db}{KEY_SEPARATOR}{t}" for t in tables],
                          lambda pipe: pipe.srem(cat.k_dbs(), db), db)
        return record

    async def soft_delete_table(self, db: str, table: str, hard_delete_at_ms: int | None,
                                now_ms: int | None = None) -> SoftDeleted:
        """Rename one table of ``db`` and hide it, like :meth:`soft_delete_database`."""
        cat = self.catalog
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms

        async def taken(name: str) -> bool:
            return name in await cat.tables(db) or await self.record(db, name) is not None

        new = await self._free_name(table, now_ms, taken)
        moves = [(cat.k_columns(db, table), cat.k_columns(db, new)),
                 (cat.k_files(db, table), cat.k_files(db, new)),
                 (cat.k_buffer(db, table), cat.k_buffer(db, new))]
        record = SoftDeleted(db, new, table, now_ms, hard_delete_at_ms)
        field_name = cat.deleted_table_field(db, table)
        await self._apply(record, moves, [field_name],
                          lambda pipe: pipe.srem(cat.k_tables(db), table), field_name)
        return record

    async def _apply(self, record: SoftDeleted, moves: list[tuple[str, str]],
                     settings_fields: list[str], hide, mark: str) -> None:
        cat = self.catalog
        async with self.redis.pipeline(transaction=False) as pipe:
            for source, _ in moves:
                pipe.exists(source)
            present = await pipe.execute()
        await self._save_copy(record)  # first: a rebuild after a crash here keeps it deleted
        async with self.redis.pipeline(transaction=True) as pipe:
            hide(pipe)
            for (source, target), there in zip(moves, present):
                if there:
                    pipe.rename(source, target)
            pipe.hdel(cat.k_templates(), *settings_fields)
            pipe.hdel(cat.k_retention(), *settings_fields)
            pipe.hset(cat.k_deleted(), mark, record.deleted_at_ms)
            pipe.hset(self.k_soft_deleted(), record.key, record.to_json())
            pipe.incr(cat.k_version())
            await pipe.execute()
        if self.store is not None:  # the old name's period must not come back with a rebuild
            await LifecycleCatalog(cat).save_retention_copy(self.store)

    async def set_hard_delete_at(self, record: SoftDeleted, hard_delete_at_ms: int | None
                                 ) -> SoftDeleted:
        changed = dataclasses.replace(record, hard_delete_at_ms=hard_delete_at_ms)
        await self._save_copy(changed)
        await self.redis.hset(self.k_soft_deleted(), changed.key, changed.to_json())
        return changed

    # ---- hard delete ----------------------------------------------------------------------
    async def hard_delete(self, record: SoftDeleted) -> int:
        """Remove a soft-deleted database's or table's objects, then its catalog entries and
        record (a crash in between repeats the deletion: deleting a missing object is a no-op).
        Returns the number of objects deleted."""
        cat = self.catalog
        tables = record.tables if record.table is None else [record.table]
        paths = [m.path for t in tables for m in await cat.files(record.database, t)]
        if self.store is not None:
            await asyncio.to_thread(lambda: [self.store.delete(p) for p in paths])
        async with self.redis.pipeline(transaction=True) as pipe:
            for t in tables:
                pipe.delete(cat.k_columns(record.database, t), cat.k_files(record.database, t),
                            cat.k_buffer(record.database, t))
            if record.table is None:
                pipe.delete(cat.k_tables(record.database))
            pipe.hdel(self.k_soft_deleted(), record.key)
            pipe.incr(cat.k_version())
            await pipe.execute()
        if self.store is not None:
            await asyncio.to_thread(self.store.delete, self._copy_path(record))
        return len(paths)

    async def hard_delete_due(self, now_ms: int | None = None) -> list[SoftDeleted]:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        done = []
        for record in await self.records():
            if record.due(now_ms):
                await self.hard_delete(record)
                done.append(record)
        return done

    # ---- object-store copies (catalog rebuild) --------------------------------------------
    @staticmethod
    def _copy_path(record: SoftDeleted) -> str:
        return f"{SOFT_DELETED_PREFIX}{hashlib.sha1(record.key.encode()).hexdigest()}.json"

    async def _save_copy(self, record: SoftDeleted) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.put, self._copy_path(record),
                                    record.to_json().encode())

    async def restore(self) -> list[SoftDeleted]:
        """Put the records back from their object-store copies (catalog rebuild)."""
        if self.store is None:
            return []
        objects = await asyncio.to_thread(lambda: list(self.store.list(SOFT_DELETED_PREFIX)))
        found = [SoftDeleted.from_json(await asyncio.to_thread(self.store.get, o.path))
                 for o in objects]
        if found:
            await self.redis.hset(self.k_soft_deleted(),
                                  mapping={r.key: r.to_json() for r in found})
        return found

    async def hide_restored(self, records: list[SoftDeleted]) -> None:
        """After files were registered under the new names, hide those names again."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for r in records:
                if r.table is None:
                    pipe.srem(self.catalog.k_dbs(), r.database)
                else:
                    pipe.srem(self.catalog.k_tables(r.database), r.table)
            await pipe.execute()


def owner(records: list[SoftDeleted], meta: ParquetFileMeta) -> ParquetFileMeta:
    """A file found in the store, renamed into the soft-deleted database or table it belongs
    to (catalog rebuild); unchanged when it belongs to no soft-deleted one."""
    for r in records:
        if r.owns(meta):
            if r.table is None:
                return dataclasses.replace(meta, database=r.database)
            return dataclasses.replace(meta, table=r.table)
    return meta
