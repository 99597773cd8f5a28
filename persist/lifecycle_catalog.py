"""Catalog state of the data lifecycle (Redis), beside persist/catalog.py:

- ``<ns>:tombstones``        hash id -> tombstone JSON; ``<ns>:tombstone_seq`` the last id
                             (never lowered: files record the highest id applied to them);
                             ``<ns>:tombstone_purges`` counts tombstones removed once applied
- ``<ns>:gc``                sorted set object path -> unix time after which it is deleted
                             (compaction inputs, and outputs not yet swapped in: "intents")
- ``<ns>:gc_claimed``        set of paths a sweep claimed and is deleting
- ``<ns>:compact_lease:<db>␟<table>␟<partition key>``  the worker compacting a partition
- ``<ns>:compaction_events`` stream of compaction outcomes (``system.compaction_events``)
- ``<ns>:compaction_outbox`` hash event id -> ``compacted`` persist event not yet sent

Tombstones and retention periods also have a copy in the object store (``_catalog/``), so
``influent catalog rebuild`` restores them with the files.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import redis.asyncio as aioredis

from persist.catalog import Catalog
from persist.object_store import ObjectStore
from persist.parquet_files import ParquetFileMeta
from persist.tombstones import Tombstone
from persist.visibility import Visibility

CATALOG_PREFIX = "_catalog/"
TOMBSTONE_PREFIX = CATALOG_PREFIX + "tombstones/"
RETENTION_OBJECT = CATALOG_PREFIX + "retention.json"
EVENTS_KEPT = 10_000

_ADD_TOMBSTONE = """
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[1])
return id
"""

#: KEYS: files hash, gc zset, lease key, outbox hash, events stream
#: ARGV: lease token, delete-after time, event id, event JSON, stream entry JSON,
#:       n inputs, inputs..., n outputs, (path, record)...
_SWAP = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local n_in = tonumber(ARGV[6])
for i = 1, n_in do
  if redis.call('HEXISTS', KEYS[1], ARGV[6 + i]) == 0 then return 0 end
end
local base = 7 + n_in
local n_out = tonumber(ARGV[base])
for i = 0, n_out - 1 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[base + 1 + 2 * i]) then return -2 end
end
for i = 1, n_in do
  redis.call('HDEL', KEYS[1], ARGV[6 + i])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[6 + i])
end
for i = 0, n_out - 1 do
  redis.call('HSET', KEYS[1], ARGV[base + 1 + 2 * i], ARGV[base + 2 + 2 * i])
  redis.call('ZREM', KEYS[2], ARGV[base + 1 + 2 * i])
end
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', %d, '*', 'event', ARGV[5])
return 1
""" % EVENTS_KEPT

_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LifecycleCatalog:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.redis: aioredis.Redis = catalog.redis
        self.ns = catalog.ns
        self._seen_seq, self._seen = (0, 0), []

    # ---- keys -----------------------------------------------------------------------------
    def k_tombstones(self) -> str:
        return f"{self.ns}:tombstones"

    def k_tombstone_seq(self) -> str:
        return f"{self.ns}:tombstone_seq"

    def k_tombstone_purges(self) -> str:
        return f"{self.ns}:tombstone_purges"

    def k_gc(self) -> str:
        return f"{self.ns}:gc"

    def k_gc_claimed(self) -> str:
        return f"{self.ns}:gc_claimed"

    def k_lease(self, db: str, table: str, partition_key: str) -> str:
        return f"{self.ns}:compact_lease:{db}\x1f{table}\x1f{partition_key}"

    def k_events(self) -> str:
        return f"{self.ns}:compaction_events"

    def k_outbox(self) -> str:
        return f"{self.ns}:compaction_outbox"

    # ---- tombstones -----------------------------------------------------------------------
    async def add_tombstone(self, tomb: Tombstone, store: ObjectStore | None = None) -> Tombstone:
        """Record a tombstone (its id comes from the counter in the same step, so a reader that
        saw id N saw every tombstone up to N) and its copy in the object store."""
        new_id = await self.redis.eval(_ADD_TOMBSTONE, 2, self.k_tombstone_seq(),
                                       self.k_tombstones(), tomb.to_json())
        saved = dataclasses.replace(tomb, id=int(new_id))
        if store is not None:
            await asyncio.to_thread(store.put, f"{TOMBSTONE_PREFIX}{saved.id:012d}.json",
                                    saved.to_json().encode())
        return saved

    async def tombstones(self, db: str | None = None) -> tuple[int, list[Tombstone]]:
        """(highest id, tombstones of ``db`` or of every database), read in one step."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.k_tombstone_seq())
            pipe.hgetall(self.k_tombstones())
            seq, raw = await pipe.execute()
        found = sorted((dataclasses.replace(Tombstone.from_json(v), id=int(k))
                        for k, v in raw.items()), key=lambda t: t.id)
        return int(seq or 0), [t for t in found if db is None or t.database == db]

    async def restore_tombstones(self, store: ObjectStore) -> int:
        """Put the object store's tombstone copies back (catalog rebuild); returns how many."""
        objects = await asyncio.to_thread(lambda: list(store.list(TOMBSTONE_PREFIX)))
        found = []
        for obj in objects:
            data = await asyncio.to_thread(store.get, obj.path)
            found.append(Tombstone.from_json(data))
        if not found:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for t in found:
                pipe.hset(self.k_tombstones(), str(t.id), t.to_json())
            await pipe.execute()
        await self.raise_tombstone_seq(max(t.id for t in found))
        return len(found)

    async def raise_tombstone_seq(self, at_least: int) -> None:
        """Make the next tombstone id higher than ``at_least`` (catalog rebuild: the highest id
        restored, or applied to a restored file -- a purged tombstone's id must not be reused,
        or files that applied it would ignore the new one)."""
        await self.redis.eval(_RAISE, 1, self.k_tombstone_seq(), int(at_least))

    async def purge_tombstones(self, ids: list[int], store: ObjectStore | None = None) -> None:
        """Forget tombstones that hide nothing any more (persist/tombstones.py ``purgeable``):
        the catalog entry, then the object-store copy catalog rebuild would restore."""
        if not ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.k_tombstones(), *[str(i) for i in ids])
            pipe.incr(self.k_tombstone_purges())
            await pipe.execute()
        if store is not None:
            for i in ids:
                await asyncio.to_thread(store.delete, f"{TOMBSTONE_PREFIX}{i:012d}.json")

    async def visibility(self, db: str, table: str, now_ns: int | None = None,
                         marks: list | None = None) -> Visibility:
        """The retention cutoff and tombstones of one table. Tombstones are kept in memory
        and read again only when the tombstone or purge counter moved. ``marks``: the replies
        of :meth:`queue_visibility` when the caller read them in its own pipeline."""
        if marks is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                self.queue_visibility(pipe, db, table)
                marks = await pipe.execute()
        seq, purges, (own, inherited) = marks
        seen = (int(seq or 0), int(purges or 0))
        if seen != self._seen_seq:
            _, self._seen = await self.tombstones()
            self._seen_seq = seen
        period = own if own is not None else inherited
        now_ns = time.time_ns() if now_ns is None else now_ns
        return Visibility(cutoff=None if period is None else now_ns - int(period),
                          tombstones=tuple(t for t in self._seen
                                           if t.database == db and t.covers(table)))

    def queue_visibility(self, pipe, db: str, table: str) -> None:
        """Queue the three reads :meth:`visibility` needs (their replies are its ``marks``)."""
        pipe.get(self.k_tombstone_seq())
        pipe.get(self.k_tombstone_purges())
        pipe.hmget(self.catalog.k_retention(), [f"{db}\x1f{table}", db])

    # ---- retention copies -----------------------------------------------------------------
    async def save_retention_copy(self, store: ObjectStore) -> None:
        """Write every retention period to the object store (after each change)."""
        raw = await self.redis.hgetall(self.catalog.k_retention())
        body = json.dumps({k.decode(): int(v) for k, v in raw.items()}, sort_keys=True).encode()
        await asyncio.to_thread(store.put, RETENTION_OBJECT, body)

    async def restore_retention(self, store: ObjectStore) -> int:
        try:
            data = await asyncio.to_thread(store.get, RETENTION_OBJECT)
        except Exception:  # no copy yet: nothing was ever set
            return 0
        periods = json.loads(data)
        if periods:
            await self.redis.hset(self.catalog.k_retention(),
                                  mapping={k: str(v) for k, v in periods.items()})
        return len(periods)

    # ---- leases ---------------------------------------------------------------------------
    async def acquire(self, db: str, table: str, partition_key: str, ttl_s: float) -> str | None:
        token = uuid.uuid4().hex
        ok = await self.redis.set(self.k_lease(db, table, partition_key), token, nx=True,
                                  px=int(ttl_s * 1000))
        return token if ok else None

    async def renew(self, db: str, table: str, partition_key: str, token: str, ttl_s: float) -> bool:
        return bool(await self.redis.eval(_RENEW, 1, self.k_lease(db, table, partition_key), token,
                                          int(ttl_s * 1000)))

    async def release(self, db: str, table: str, partition_key: str, token: str) -> None:
        await self.redis.eval(_RELEASE, 1, self.k_lease(db, table, partition_key), token)

    # ---- compaction -----------------------------------------------------------------------
    async def add_intents(self, paths: list[str], delete_after: float) -> None:
        """Outputs about to be written: deleted after ``delete_after`` unless swapped in."""
        if paths:
            await self.redis.zadd(self.k_gc(), {p: delete_after for p in paths})

    async def swap(self, db: str, table: str, partition_key: str, token: str,
                   inputs: list[str], outputs: list[ParquetFileMeta], delete_after: float,
                   event: dict, summary: dict) -> int:
        """Replace ``inputs`` by ``outputs`` in one step; inputs join the deletion queue, the
        ``compacted`` event joins the outbox and the event stream. Returns 1 when done, 0 when
        an input is gone (someone else changed the partition), -1 when the lease is lost, -2
        when an output's intent was already claimed by a sweep."""
        event_id = uuid.uuid4().hex
        args: list = [token, delete_after, event_id, json.dumps(event), json.dumps(summary),
                      len(inputs), *inputs, len(outputs)]
        for meta in outputs:
            args += [meta.path, meta.to_json()]
        return int(await self.redis.eval(
            _SWAP, 5, self.catalog.k_files(db, table), self.k_gc(),
            self.k_lease(db, table, partition_key), self.k_outbox(), self.k_events(), *args))

    async def record_event(self, summary: dict) -> None:
        """An outcome with no catalog change (a failed or skipped compaction)."""
        await self.redis.xadd(self.k_events(), {"event": json.dumps(summary)},
                              maxlen=EVENTS_KEPT, approximate=True)

    async def events(self, count: int = 1000) -> list[dict]:
        raw = await self.redis.xrevrange(self.k_events(), count=count)
        return [json.loads(fields[b"event"]) for _, fields in reversed(raw)]

    async def outbox(self) -> list[tuple[str, bytes]]:
        raw = await self.redis.hgetall(self.k_outbox())
        return sorted((k.decode(), v) for k, v in raw.items())

    async def outbox_done(self, event_id: str) -> None:
        await self.redis.hdel(self.k_outbox(), event_id)

    # ---- deletion queue -------------------------------------------------------------------
    async def queue_deletion(self, paths: list[str], delete_after: float) -> None:
        if paths:
            await self.redis.zadd(self.k_gc(), {p: delete_after for p in paths})

    async def due_deletions(self, now: float | None = None) -> list[str]:
        """Claim the paths whose grace period is over (each claimed by one sweep only), plus any
        claimed earlier by a sweep that died before deleting them."""
        now = time.time() if now is None else now
        due = await self.redis.zrangebyscore(self.k_gc(), "-inf", now)
        claimed = []
        for raw in due:
            if await self.redis.eval(_CLAIM, 2, self.k_gc(), self.k_gc_claimed(), raw):
                claimed.append(raw.decode())
        leftover = [p.decode() for p in await self.redis.smembers(self.k_gc_claimed())]
        return sorted(set(claimed) | set(leftover))

    async def deleted(self, path: str) -> None:
        await self.redis.srem(self.k_gc_claimed(), path)

    async def pending_deletions(self) -> int:
        return int(await self.redis.zcard(self.k_gc())) + int(await self.redis.scard(self.k_gc_claimed()))

