"""The value caches of one query API process, kept current from the write stream.

Where the caches live: in every query API process, because that is where queries are answered
(a query reads its cache in memory, no network hop). Each process

- reads the cache definitions from the catalog (persist/value_caches.py) and polls their
  version counter, so a cache created through any replica appears in all of them;
- **seeds** each new cache from the table's stored rows (buffer snapshots and Parquet files,
  deduplicated, through the same loading path as a query), so a cache is full from its first
  answer and after every restart (InfluxDB 3 fills its caches only with later writes);
- reads every partition of ``influent.accepted`` (the validated Arrow batches, no consumer
  group: each process needs all of them) and hands each batch of a cached table to its caches.

A batch may be accepted (in Kafka) a moment before its snapshot is in Redis, so whenever caches
are added the reader goes back ``REPLAY_S`` seconds before seeding starts: a batch is then
seen by the seed, by the stream, or by both (merging it twice gives the same rows).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from influent.config import Settings
from influent.model import MAX_FETCH_BYTES, MAX_MESSAGE_BYTES
from persist.catalog import Catalog, TableSchema
from persist.value_caches import CacheCatalog, CacheDef, LastCacheDef
from query_api.value_caches import DistinctValueCache, LastValueCache
from topics.wire import decode_batches, header_dict

log = logging.getLogger("influent.caches")

REPLAY_S = 60
POLL_S = 1.0
Cache = LastValueCache | DistinctValueCache
Key = tuple[str, str, str, str]  # kind, db, table, name
TableLoader = Callable[[str, str], Awaitable[pa.Table]]


class CacheNotFound(LookupError):
    pass


def cache_key(definition: CacheDef) -> Key:
    return (CacheCatalog.kind_of(definition), definition.db, definition.table, definition.name)


class ValueCaches:
    def __init__(self, settings: Settings, catalog: Catalog, load: TableLoader):
        self.settings = settings
        self.catalog = catalog
        self.definitions = CacheCatalog(catalog.redis, catalog.ns)
        self.load = load
        self.caches: dict[Key, Cache] = {}
        self.seeded: dict[Key, asyncio.Event] = {}
        self.lock = threading.Lock()  # cache contents: stream, seeds and queries use threads
        self.sync_lock = asyncio.Lock()
        self.version = -1
        self.consumer: AIOKafkaConsumer | None = None
        self.tasks: list[asyncio.Task] = []

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._poll(), name="value-cache-poll"))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    async def _poll(self) -> None:
        while True:
            try:
                if await self.definitions.version() != self.version:
                    await self.sync()
                await self._refresh_series_keys()
            except Exception:  # Redis away: keep serving what is cached, try again
                log.warning("reading the cache definitions failed", exc_info=True)
            await asyncio.sleep(POLL_S)

    async def sync(self) -> None:
        """Bring the caches in line with the catalog's definitions."""
        async with self.sync_lock:
            version = await self.definitions.version()
            wanted = {cache_key(d): d for d in await self.definitions.all()}
            with self.lock:
                for key in [k for k in self.caches if k not in wanted]:
                    del self.caches[key]
                    self.seeded.pop(key, None)
            added = [d for k, d in wanted.items() if k not in self.caches]
            if added:
                schemas = {(d.db, d.table): await self.catalog.table_schema(d.db, d.table)
                           for d in added}
                with self.lock:  # first in place, so the replayed batches reach them
                    for d in added:
                        self.caches[cache_key(d)] = self._new_cache(d, schemas[(d.db, d.table)])
                        self.seeded[cache_key(d)] = asyncio.Event()
                try:
                    await self._rewind()
                except Exception:
                    with self.lock:  # made again at the next attempt
                        for d in added:
                            self.caches.pop(cache_key(d), None)
                            self.seeded.pop(cache_key(d), None)
                    raise
                for d in added:
                    self.tasks.append(asyncio.create_task(self._seed(cache_key(d))))
            self.version = version

    async def _refresh_series_keys(self) -> None:
        """A table's tags grow with its writes: last caches merge rows by the current series key."""
        with self.lock:
            tables = {(k[1], k[2]) for k, c in self.caches.items() if isinstance(c, LastValueCache)}
        for db, table in tables:
            tags = (await self.catalog.table_schema(db, table)).tags
            with self.lock:
                for key, cache in self.caches.items():
                    if (key[1], key[2]) == (db, table) and isinstance(cache, LastValueCache):
                        cache.tags = tags

    @staticmethod
    def _new_cache(definition: CacheDef, schema: TableSchema) -> Cache:
        if isinstance(definition, LastCacheDef):
            return LastValueCache(definition, schema.tags)
        return DistinctValueCache(definition)

    async def _seed(self, key: Key) -> None:
        _, db, table, _ = key
        try:
            rows = await self.load(db, table)
        except Exception:
            log.warning("seeding cache %s from the stored rows failed; it fills from new writes",
                        key, exc_info=True)
            rows = None
        cache = self.caches.get(key)
        if cache is not None:
            def apply() -> None:
                with self.lock:
                    if rows is not None and rows.num_rows:
                        cache.add(rows, time.time_ns())
                    cache.merge()
                    cache.state.ready = True
            await asyncio.to_thread(apply)
        event = self.seeded.get(key)
        if event is not None:
            event.set()

    # ---- the write stream --------------------------------------------------------------------
    async def _rewind(self) -> None:
        """Start (or move) the reader ``REPLAY_S`` seconds back on every accepted partition."""
        topic = self.settings.accepted_topic
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        if self.consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                        group_id=None, enable_auto_commit=False,
                                        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                                        fetch_max_bytes=MAX_FETCH_BYTES)
            await consumer.start()
            consumer.assign(tps)
            self.consumer = consumer
            self.tasks.append(asyncio.create_task(self._read(), name="value-cache-feed"))
        since = int(time.time() * 1000) - REPLAY_S * 1000
        found = await self.consumer.offsets_for_times({tp: since for tp in tps})
        ends = await self.consumer.end_offsets(tps)
        for tp in tps:
            at = found.get(tp)
            self.consumer.seek(tp, at.offset if at is not None else ends[tp])

    async def _read(self) -> None:
        while True:
            try:
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            except KafkaError:
                log.warning("reading %s failed; retrying", self.settings.accepted_topic,
                            exc_info=True)
                await asyncio.sleep(1.0)
                continue
            records = [r for batch in fetched.values() for r in batch]
            if records:
                await asyncio.to_thread(self._apply, records)

    def _apply(self, records) -> None:
        touched: dict[int, Cache] = {}
        self._add_records(records, touched)
        # merged here, in the feed's thread, a fetch at a time: a query then finds the cache
        # settled instead of merging (and deduplicating) everything that arrived since the
        # last query -- during a replay that was most of a query's time
        with self.lock:
            for cache in touched.values():
                cache.merge()

    def _add_records(self, records, touched: dict[int, Cache]) -> None:
        for record in records:
            headers = header_dict(record.headers)
            target = (headers.get("database"), headers.get("table"))
            with self.lock:
                caches = [c for k, c in self.caches.items() if (k[1], k[2]) == target]
            if not caches or not record.value:
                continue
            try:
                batch = decode_batches(record.value)
            except Exception:  # not an Arrow batch: not ours to judge, ingest wrote it
                log.warning("undecodable accepted record p%d@%d", record.partition, record.offset)
                continue
            with self.lock:
                for cache in caches:
                    cache.add(batch)
                    touched[id(cache)] = cache

    # ---- lookups -----------------------------------------------------------------------------
    def find(self, kind: str, db: str, table: str, name: str | None) -> Cache:
        with self.lock:
            found = [c for k, c in self.caches.items() if k[:3] == (kind, db, table)
                     and (name is None or k[3] == name)]
        if len(found) != 1:
            what = f"{kind} cache {name!r} on table {table!r}" if name else (
                f"a single {kind} cache on table {table!r}")
            raise CacheNotFound(f"no {what} in database {db!r}"
                                if not found else f"table {table!r} has several {kind} caches: "
                                "name one")
        return found[0]

    async def ready(self, kind: str, db: str, table: str, name: str | None) -> Cache:
        """The cache, once seeded (definitions read again first if it is not known yet)."""
        try:
            cache = self.find(kind, db, table, name)
        except CacheNotFound:
            await self.sync()
            cache = self.find(kind, db, table, name)
        key = cache_key(cache.definition)
        event = self.seeded.get(key)
        if event is not None:
            await event.wait()
        return cache

    def table_caches(self, db: str, table: str) -> list[Cache]:
        with self.lock:
            return [c for k, c in self.caches.items() if (k[1], k[2]) == (db, table)
                    and c.state.ready]

    def read(self, cache: Cache, newest: int = 0) -> pa.Table:
        """The rows ``last_cache()``/``distinct_cache()`` show, or the ``newest`` newest rows of
        each key of a last cache."""
        with self.lock:
            return cache.newest_rows(newest) if newest else cache.rows()

    def settled(self, db: str, table: str) -> bool:
        """Whether no cache of the table has written rows waiting to be merged (reading it
        is then a few lookups)."""
        with self.lock:
            return all(not c.state.pending for k, c in self.caches.items()
                       if (k[1], k[2]) == (db, table))

    def completeness(self, cache: Cache) -> bool:
        with self.lock:
            cache.merge()
            return cache.state.ready and cache.state.complete
