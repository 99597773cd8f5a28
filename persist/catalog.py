"""The catalog in Redis: databases, tables, column types and buffer snapshots.

Key layout (``<ns>`` is the topic prefix without its trailing dot, so test runs and
deployments sharing one Redis never collide) — see docs/catalog.md:

- ``<ns>:dbs``                          set of database names
- ``<ns>:db:<db>:tables``               set of table names
- ``<ns>:db:<db>:t:<table>:cols``       hash column -> kind ("tag", "time", or a field type)
- ``<ns>:db:<db>:t:<table>:buf``        hash buffer key -> Arrow IPC batch (buffer snapshot)
- ``<ns>:db:<db>:t:<table>:files``      hash object path -> Parquet file record (JSON)
- ``<ns>:deleted``                      hash db (or db \x1f table) -> ms: data written up to
  then is deleted
- ``<ns>:templates``                    hash "<db>" or "<db>␟<table>" -> partition template JSON
- ``<ns>:outbox:<source partition>``    hash object path -> persist event JSON not yet sent
- ``<ns>:persisted``                    hash "<db>␟<table>␟<partition key>␟<source partition>"
                                         -> highest source offset persisted (the watermark)
- ``<ns>:catalog_version``              counter raised by every change a cached copy of the
                                         catalog can miss (deletes, partition templates)

The first writer of a column wins: columns are added with HSETNX, so two workers racing on a
new column agree on one type and the loser's lines are rejected with a clear reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from influent.model import FIELD_TYPES, KEY_SEPARATOR, TAG, TIME, TIME_COLUMN
from influent.model import validate_db_name as validate_db_name  # re-exported: callers check names here
from persist.parquet_files import ParquetFileMeta
from persist.partitioning import PartitionTemplate

import redis.asyncio as aioredis



#: field, size, field, size, ... of a snapshot hash, in one server-side step.
_FIELD_SIZES = """
local out = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  out[#out + 1] = f
  out[#out + 1] = redis.call('HSTRLEN', KEYS[1], f)
end
return out
"""


_FILE_METAS: dict[bytes, ParquetFileMeta] = {}


def _file_meta(record: bytes) -> ParquetFileMeta:
    """A file record decoded, memoised by its bytes (a record never changes once written, and
    every query of a table reads all of its records)."""
    meta = _FILE_METAS.get(record)
    if meta is None:
        if len(_FILE_METAS) >= 100_000:
            _FILE_METAS.clear()
        meta = _FILE_METAS[record] = ParquetFileMeta.from_json(record)
    return meta


@dataclass(frozen=True)
class TableSchema:
    """Columns of one table as the catalog knows them: name -> kind."""

    columns: dict[str, str]

    @property
    def tags(self) -> list[str]:
        return sorted(c for c, k in self.columns.items() if k == TAG)

    @property
    def fields(self) -> dict[str, str]:
        return {c: k for c, k in self.columns.items() if k in FIELD_TYPES}


def schema_conflicts(offered: dict[str, str], known: dict[str, str]) -> dict[str, str]:
    """Columns whose offered kind differs from the catalog's, with the reason (pure)."""
    reasons: dict[str, str] = {}
    for column, kind in offered.items():
        fixed = known.get(column)
        if fixed is None or fixed == kind:
            continue
        if fixed == TAG or kind == TAG:
            what = "tag" if fixed == TAG else f"field of type {fixed}"
            reasons[column] = (f"column '{column}' is already a {what} in the catalog; "
                               f"cannot use it as a {'tag' if kind == TAG else 'field'}")
        else:
            reasons[column] = (f"invalid column type for column '{column}', expected {fixed}, "
                               f"got {kind}")
    return reasons


class Catalog:
    """Async access to the catalog keys of one namespace."""

    def __init__(self, redis: aioredis.Redis, namespace: str):
        self.redis = redis
        self.ns = namespace

    @classmethod
    def connect(cls, redis_url: str, namespace: str) -> "Catalog":
        return cls(aioredis.from_url(redis_url), namespace)

    async def close(self) -> None:
        await self.redis.aclose()

    # ---- keys -----------------------------------------------------------------------------
    def k_dbs(self) -> str:
        return f"{self.ns}:dbs"

    def k_tables(self, db: str) -> str:
        return f"{self.ns}:db:{db}:tables"

    def k_columns(self, db: str, table: str) -> str:
        return f"{self.ns}:db:{db}:t:{table}:cols"

    def k_buffer(self, db: str, table: str) -> str:
        return f"{self.ns}:db:{db}:t:{table}:buf"

    def k_files(self, db: str, table: str) -> str:
        return f"{self.ns}:db:{db}:t:{table}:files"

    def k_watermarks(self) -> str:
        return f"{self.ns}:persisted"

    def k_version(self) -> str:
        return f"{self.ns}:catalog_version"

    async def version(self) -> int:
        """The catalog version: a worker's cached schemas, templates and deletes are valid while
        it stays the same (new columns need no bump: a cache only ever misses them)."""
        return int(await self.redis.get(self.k_version()) or 0)

    async def deletions(self) -> dict[str, int]:
        """Every delete mark: db (or db␟table) -> ms; rows written up to then are deleted."""
        raw = await self.redis.hgetall(self.k_deleted())
        return {k.decode(): int(v) for k, v in raw.items()}

    async def partition_watermarks(self, source_partition: int) -> dict[tuple[str, str, str], int]:
        """The watermarks of one source partition: (db, table, partition key) -> offset."""
        found = {}
        async for name, value in self.redis.hscan_iter(
                self.k_watermarks(), match=f"*{KEY_SEPARATOR}{source_partition}", count=1000):
            db, table, pk, _ = name.decode().split(KEY_SEPARATOR)
            found[(db, table, pk)] = int(value)
        return found

    @staticmethod
    def watermark_field(db: str, table: str, partition_key: str, source_partition: int) -> str:
        return KEY_SEPARATOR.join((db, table, partition_key, str(source_partition)))

    # ---- databases and tables -------------------------------------------------------------
    async def databases(self) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.k_dbs()))

    async def has_database(self, db: str) -> bool:
        return bool(await self.redis.sismember(self.k_dbs(), db))

    async def create_database(self, db: str) -> bool:
        return bool(await self.redis.sadd(self.k_dbs(), db))

    async def tables(self, db: str) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.k_tables(db)))

    async def table_schema(self, db: str, table: str) -> TableSchema:
        raw = await self.redis.hgetall(self.k_columns(db, table))
        return TableSchema({k.decode(): v.decode() for k, v in raw.items()})

    async def ensure_columns(self, db: str, table: str, offered: dict[str, str]) -> TableSchema:
        """Add the offered columns that are new (first writer wins); return the resulting schema."""
        known = await self.table_schema(db, table)
        new = {c: k for c, k in offered.items() if c not in known.columns}
        if not new and known.columns:
            return known
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.k_dbs(), db)
            pipe.sadd(self.k_tables(db), table)
            pipe.hsetnx(self.k_columns(db, table), TIME_COLUMN, TIME)
            for column, kind in new.items():
                pipe.hsetnx(self.k_columns(db, table), column, kind)
            await pipe.execute()
        return await self.table_schema(db, table)

    async def claim_columns(self, claims: dict[tuple[str, str], dict[str, str]]
                            ) -> dict[tuple[str, str], TableSchema]:
        """``ensure_columns`` for many (database, table) pairs in one round trip: offered
        columns that are new are added (first writer wins), and each resulting schema is read
        in the same transaction."""
        keys = list(claims)
        async with self.redis.pipeline(transaction=True) as pipe:
            for db, table in keys:
                pipe.sadd(self.k_dbs(), db)
                pipe.sadd(self.k_tables(db), table)
                pipe.hsetnx(self.k_columns(db, table), "time", TIME)
                for column, kind in claims[(db, table)].items():
                    pipe.hsetnx(self.k_columns(db, table), column, kind)
                pipe.hgetall(self.k_columns(db, table))
            replies = await pipe.execute()
        schemas, at = {}, 0
        for db, table in keys:
            at += 3 + len(claims[(db, table)])
            schemas[(db, table)] = TableSchema({k.decode(): v.decode()
                                                for k, v in replies[at].items()})
            at += 1
        return schemas

    # ---- retention periods ----------------------------------------------------------------
    def k_retention(self) -> str:
        return f"{self.ns}:retention"

    async def set_retention(self, db: str, table: str | None, period_ns: int | None) -> None:
        """Set (or, with None, clear) the retention period of a database or one table."""
        name = db if table is None else f"{db}\x1f{table}"
        if period_ns is None:
            await self.redis.hdel(self.k_retention(), name)
        else:
            await self.redis.hset(self.k_retention(), name, str(int(period_ns)))

    async def retention(self, db: str, table: str | None = None) -> int | None:
        """The retention period in ns of a database or table; None when unlimited."""
        name = db if table is None else f"{db}\x1f{table}"
        raw = await self.redis.hget(self.k_retention(), name)
        return int(raw) if raw is not None else None

    # ---- partition templates --------------------------------------------------------------
    def k_templates(self) -> str:
        return f"{self.ns}:templates"

    async def set_partition_template(self, db: str, table: str | None,
                                     template: PartitionTemplate) -> None:
        name = db if table is None else f"{db}{KEY_SEPARATOR}{table}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.k_templates(), name, template.to_json())
            pipe.incr(self.k_version())
            await pipe.execute()

    async def partition_template(self, db: str, table: str) -> PartitionTemplate:
        """The table's template, else the database's, else the default (UTC day)."""
        own, inherited = await self.redis.hmget(self.k_templates(), f"{db}{KEY_SEPARATOR}{table}", db)
        return PartitionTemplate.from_json(own or inherited)

    # ---- buffer snapshots -----------------------------------------------------------------
    async def put_snapshots(self, items: list[tuple[str, str, str, bytes]]) -> None:
        """Publish buffered batches: (db, table, buffer key, Arrow IPC bytes)."""
        if not items:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for db, table, key, data in items:
                pipe.hset(self.k_buffer(db, table), key, data)
            await pipe.execute()

    async def missing_snapshots(self, items: list[tuple[str, str, str, bytes]]
                                ) -> list[tuple[str, str, str, bytes]]:
        """The subset of ``items`` whose snapshot field is not in Redis."""
        if not items:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for db, table, key, _ in items:
                pipe.hexists(self.k_buffer(db, table), key)
            present = await pipe.execute()
        return [item for item, there in zip(items, present) if not there]

    async def table_state(self, db: str, table: str
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[bytes]]:
        """Schema, files and buffer snapshots of a table read in one MULTI/EXEC, so a persist
        committing meanwhile is seen entirely or not at all."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.k_columns(db, table))
            pipe.hgetall(self.k_files(db, table))
            pipe.hgetall(self.k_buffer(db, table))
            cols, files, bufs = await pipe.execute()
        schema = TableSchema({k.decode(): v.decode() for k, v in cols.items()})
        metas = sorted((ParquetFileMeta.from_json(v) for v in files.values()),
                       key=lambda m: (m.max_write_ts, m.max_write_seq, m.path))
        return schema, metas, list(bufs.values())

    async def table_state_sizes(self, db: str, table: str
                                ) -> tuple[TableSchema, list[ParquetFileMeta], dict[str, int]]:
        """Like :meth:`table_state`, with each snapshot's field and size instead of its bytes
        (for readers that keep snapshots they have already fetched)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.queue_state_sizes(pipe, db, table)
            return self.state_sizes(*await pipe.execute())

    def queue_state_sizes(self, pipe, db: str, table: str) -> None:
        """Queue the three reads of :meth:`table_state_sizes` on a caller's pipeline (their
        replies go to :meth:`state_sizes`)."""
        pipe.hgetall(self.k_columns(db, table))
        pipe.hgetall(self.k_files(db, table))
        pipe.eval(_FIELD_SIZES, 1, self.k_buffer(db, table))

    @staticmethod
    def state_sizes(cols: dict, files: dict, sizes: list
                    ) -> tuple[TableSchema, list[ParquetFileMeta], dict[str, int]]:
        schema = TableSchema({k.decode(): v.decode() for k, v in cols.items()})
        metas = sorted((_file_meta(v) for v in files.values()),
                       key=lambda m: (m.max_write_ts, m.max_write_seq, m.path))
        return schema, metas, {sizes[i].decode(): int(sizes[i + 1]) for i in range(0, len(sizes), 2)}

    async def snapshot_values(self, db: str, table: str, fields: list[str]) -> list[bytes | None]:
        """The snapshots of ``fields`` (None for one persisted meanwhile)."""
        return await self.redis.hmget(self.k_buffer(db, table), fields) if fields else []

    async def snapshots(self, db: str, table: str) -> list[bytes]:
        return list((await self.redis.hgetall(self.k_buffer(db, table))).values())

    # ---- Parquet files --------------------------------------------------------------------
    def k_outbox(self, source_partition: int) -> str:
        return f"{self.ns}:outbox:{source_partition}"

    async def commit_file(self, meta: ParquetFileMeta, snapshot_fields: list[str],
                          outbox: bytes | None = None) -> None:
        """Register a persisted file and drop the snapshots it replaces, in one MULTI/EXEC:
        a query sees either the buffered rows or the file, never both and never neither.
        The persist event joins the outbox in the same step, so it is sent at least once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.k_dbs(), meta.database)
            pipe.sadd(self.k_tables(meta.database), meta.table)
            pipe.hset(self.k_files(meta.database, meta.table), meta.path, meta.to_json())
            if snapshot_fields:
                pipe.hdel(self.k_buffer(meta.database, meta.table), *snapshot_fields)
            pipe.hset(self.k_watermarks(),
                      self.watermark_field(meta.database, meta.table, meta.partition_key,
                                           meta.source_partition), meta.max_offset)
            if outbox is not None:
                pipe.hset(self.k_outbox(meta.source_partition), meta.path, outbox)
            await pipe.execute()

    async def outbox(self, source_partition: int) -> list[tuple[str, bytes]]:
        raw = await self.redis.hgetall(self.k_outbox(source_partition))
        return sorted((k.decode(), v) for k, v in raw.items())

    async def outbox_done(self, source_partition: int, path: str) -> None:
        await self.redis.hdel(self.k_outbox(source_partition), path)

    async def files(self, db: str, table: str) -> list[ParquetFileMeta]:
        raw = await self.redis.hgetall(self.k_files(db, table))
        return sorted((ParquetFileMeta.from_json(v) for v in raw.values()),
                      key=lambda m: (m.max_write_ts, m.max_write_seq, m.path))

    async def watermark(self, db: str, table: str, partition_key: str, source_partition: int) -> int:
        """Highest source offset already persisted for this buffer (-1 when none)."""
        raw = await self.redis.hget(self.k_watermarks(),
                                    self.watermark_field(db, table, partition_key, source_partition))
        return int(raw) if raw is not None else -1

    async def is_obsolete(self, db: str, table: str, partition_key: str, source_partition: int,
                          offset: int, written_ms: int) -> bool:
        """Whether a buffered batch must not be buffered or shown again: it is already in a
        file (offset at or below the watermark) or its database was deleted after it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.k_watermarks(),
                      self.watermark_field(db, table, partition_key, source_partition))
            pipe.hmget(self.k_deleted(), [db, self.deleted_table_field(db, table)])
            mark, deleted = await pipe.execute()
        return (mark is not None and offset <= int(mark)) or any(
            at is not None and written_ms <= int(at) for at in deleted)

    @staticmethod
    def deleted_table_field(db: str, table: str) -> str:
        return f"{db}{KEY_SEPARATOR}{table}"

    def k_deleted(self) -> str:
        return f"{self.ns}:deleted"

    async def delete_database(self, db: str, now_ms: int) -> list[str]:
        """Drop a database from the catalog (tables, columns, files, snapshots, template) and
        remember when, so replays and buffered batches older than that stay deleted. Returns
        the object paths of its files, for the caller to remove."""
        tables = await self.tables(db)
        paths = []
        for table in tables:
            paths.extend(m.path for m in await self.files(db, table))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(self.k_dbs(), db)
            pipe.delete(self.k_tables(db))
            for table in tables:
                self._drop_table(pipe, db, table)
            pipe.hdel(self.k_templates(), db)
            pipe.hset(self.k_deleted(), db, now_ms)
            pipe.incr(self.k_version())
            await pipe.execute()
        return paths

    async def delete_table(self, db: str, table: str, now_ms: int) -> list[str]:
        """Drop one table as :meth:`delete_database` drops a database: its columns, files,
        snapshots and template go, and rows written up to ``now_ms`` stay deleted (a later
        write creates the table afresh). Returns the object paths of its files."""
        paths = [m.path for m in await self.files(db, table)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(self.k_tables(db), table)
            self._drop_table(pipe, db, table)
            pipe.hset(self.k_deleted(), self.deleted_table_field(db, table), now_ms)
            pipe.incr(self.k_version())
            await pipe.execute()
        return paths

    def _drop_table(self, pipe, db: str, table: str) -> None:
        """Queue the removal of a table's columns, files, snapshots and template."""
        pipe.delete(self.k_columns(db, table), self.k_files(db, table), self.k_buffer(db, table))
        pipe.hdel(self.k_templates(), f"{db}{KEY_SEPARATOR}{table}")

    async def restore_file(self, meta: ParquetFileMeta) -> None:
        """Re-register a file found in the object store (catalog rebuild)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.k_dbs(), meta.database)
            pipe.sadd(self.k_tables(meta.database), meta.table)
            pipe.hsetnx(self.k_columns(meta.database, meta.table), TIME_COLUMN, TIME)
            for column, kind in meta.columns.items():
                pipe.hsetnx(self.k_columns(meta.database, meta.table), column, kind)
            pipe.hset(self.k_files(meta.database, meta.table), meta.path, meta.to_json())
            await pipe.execute()
        marks = {int(p): o for p, o in meta.sources.items()} if meta.sources else {
            meta.source_partition: meta.max_offset}
        for partition, offset in marks.items():
            field = self.watermark_field(meta.database, meta.table, meta.partition_key, partition)
            current = await self.redis.hget(self.k_watermarks(), field)
            if current is None or int(current) < offset:
                await self.redis.hset(self.k_watermarks(), field, offset)

    async def effective_retention(self, db: str, table: str) -> int | None:
        """What applies to a table's rows: its own period, else its database's."""
        own, inherited = await self.redis.hmget(self.k_retention(), f"{db}\x1f{table}", db)
        raw = own if own is not None else inherited
        return int(raw) if raw is not None else None
