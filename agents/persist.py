"""Persist agent: turns buffers into Parquet files on the object store.

Driven by ``influent.accepted`` (each accepted batch) and ``influent.ticks`` (periodic, one tick
per partition, since Faust timers cannot write tables), both co-partitioned with the buffers
table. A buffer — (database, table, partition key) of one source partition — is persisted when
it passes the row or byte threshold or when its oldest batch is older than the maximum age
(those rules are :mod:`persist.policy`).

Order of a persist, each step idempotent so a crash anywhere is repaired by a retry:
1. write the Parquet object (name fixed by the source offset range);
2. one MULTI/EXEC: register the file, drop the snapshots it replaces, raise the watermark, and
   put the persist event in the outbox;
3. delete the buffer entries (changelog tombstones);
4. send the persist event, then remove it from the outbox.
Entries at or below the watermark (left by a crash or a previous owner) are purged on the next
event of their partition; outbox events are re-sent until delivered.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace

import faust
import pyarrow as pa

from agents.backpressure import BufferedBytes
from agents.offset_guard import (OffsetGuard, catch_up_tail, faust_message, read_back_with_retry,
                                 take_baselines_on_assignment)
from influent.config import Settings
from influent.failpoints import failpoint
from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore, open_store
from persist.parquet_files import ParquetFileMeta, build_parquet, file_id, object_path
from persist.persist_events import PersistEvent
from persist.policy import PendingBuffer, PersistPolicy
from persist.tombstones import drop_deleted
from tables.buffers import BufferKey, is_position_key
from topics.declarations import PipelineTopics
from topics.wire import BatchRef, batch_stats, decode_batches, header_dict, stats_from_headers

log = logging.getLogger("influent.persist")

BufferId = tuple[str, str, str]  # database, table, partition key


FLUSH = b"flush"


def register_persist(app: faust.App, settings: Settings, topics: PipelineTopics,
                     buffers: faust.Table, pressure: BufferedBytes
                     ) -> Callable[[float], Awaitable[int]]:
    """Register the persist agent; returns ``drain(timeout)``, which persists every buffer this
    worker owns (used on clean shutdown) and returns how many buffers were left over.
    ``pressure`` is shared with ingest: what is persisted or purged is taken off it, and above
    its cap every buffer of a partition is persisted on the partition's next event."""
    guard = OffsetGuard(settings.kafka_bootstrap, app.conf.id, settings.accepted_topic)
    take_baselines_on_assignment(app, guard)
    persister = Persister(app, settings, topics, buffers, guard,
                          Catalog.connect(settings.redis_url, settings.app_id), open_store(settings),
                          PersistPolicy.from_settings(settings), pressure)
    buffers.on_recover(persister.rebuild_pending)

    @app.agent(app.topic(settings.accepted_topic, settings.ticks_topic,
                         partitions=settings.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw"), name="persist")
    async def persist_agent(stream):
        try:
            async for event in stream.events():
                await persister.on_event(event.message)
        finally:
            await guard.close()

    @app.timer(settings.tick_interval)
    async def send_ticks() -> None:
        for p in range(settings.partitions):
            await topics.ticks.send(key=b"tick", value=str(time.time()).encode(), partition=p)

    return persister.drain


class Persister:
    """The persist agent's work for the partitions this worker owns: tracks what is buffered,
    asks the policy which buffers are due, writes their Parquet files, commits them to the
    catalog and sends the persist events."""

    def __init__(self, app: faust.App, settings: Settings, topics: PipelineTopics,
                 buffers: faust.Table, guard: OffsetGuard, catalog: Catalog, store: ObjectStore,
                 policy: PersistPolicy, pressure: BufferedBytes | None = None):
        self.app = app
        self.pressure = pressure if pressure is not None else BufferedBytes(0)
        self.settings = settings
        self.topics = topics
        self.buffers = buffers
        self.guard = guard
        self.catalog = catalog
        self.store = store
        self.policy = policy
        self.pending: dict[int, dict[BufferId, PendingBuffer]] = defaultdict(
            lambda: defaultdict(PendingBuffer))
        self.seen: dict[int, int] = {}  # accepted partition -> highest offset tracked
        self.flushed: dict[int, float] = {}  # partition -> time its last flush tick was handled

    def track(self, partition: int, raw_key: bytes, data: bytes,
              stats: tuple[int, int] | None = None) -> None:
        key = BufferKey.decode(raw_key)
        rows, written_ms = stats if stats is not None else batch_stats(data)
        self.pending[partition][(key.database, key.table, key.partition_key)].add(
            raw_key, len(data), rows, written_ms)

    async def rebuild_pending(self) -> None:
        self.pending.clear()
        for raw_key, data in self.buffers.items():
            if data is not None and not is_position_key(raw_key):
                self.track(BufferKey.decode(raw_key).source_partition, raw_key, data)
        log.info("tracking %d buffers after recovery",
                 sum(len(v) for v in self.pending.values()))

    async def persist(self, partition: int, buf_id: BufferId, buf: PendingBuffer, reason: str) -> None:
        await self.drop_obsolete(partition, buf_id)
        keys = sorted(buf.entries)
        values = [self.buffers[k] for k in keys]
        present = [(k, v) for k, v in zip(keys, values) if v is not None]
        if present:
            await self.write_file(partition, buf_id, keys, present, reason)
        for k in keys:
            del self.buffers[k]
        self.pending[partition].pop(buf_id, None)
        self.pressure.remove(partition, buf.bytes)
        failpoint("before_event")
        await self.flush_outbox(partition)

    async def write_file(self, partition: int, buf_id: BufferId, keys: list[bytes],
                         present: list[tuple[bytes, bytes]], reason: str) -> None:
        """Write one Parquet object for a buffer's batches and commit it to the catalog, with
        its persist event in the outbox (steps 1 and 2 of the module docstring)."""
        db, table, pk = buf_id
        settings, store = self.settings, self.store
        offsets = [BufferKey.decode(k).offset for k in keys]
        schema = await self.catalog.table_schema(db, table)
        seq, tombstones = await LifecycleCatalog(self.catalog).tombstones(db)  # applied here
        tombstones = [t for t in tombstones if t.covers(table)]
        meta = ParquetFileMeta(
            database=db, table=table, partition_key=pk, path="", file_id="", size=0, rows=0,
            min_time=0, max_time=0, source_topic=settings.writes_topic,
            source_partition=partition, min_offset=min(offsets), max_offset=max(offsets),
            max_write_ts=0, max_write_seq=0, columns=schema.columns, created_at=time.time(),
            tombstone_seq=seq)
        fid = file_id(partition, meta.min_offset)
        meta = replace(meta, file_id=fid, path=object_path(db, table, pk, fid))

        def write() -> ParquetFileMeta:
            data = pa.concat_tables([decode_batches(v) for _, v in present],
                                    promote_options="default")
            data = drop_deleted(data, tombstones, by_write_time=True)
            body, done = build_parquet(data, schema.tags, meta)
            store.put(done.path, body)
            return done

        meta = await asyncio.to_thread(write)
        failpoint("after_object_write")
        event = PersistEvent.from_meta(meta, store.object_url(meta.path), store.url)
        snapshot_fields = [BufferKey.decode(k).snapshot_field for k, _ in present]
        await self.catalog.commit_file(meta, snapshot_fields, outbox=event.to_json())
        failpoint("after_catalog_commit")
        log.info("persisted %s/%s/%s p%d offsets %d-%d: %d rows (%s)", db, table, pk, partition,
                 meta.min_offset, meta.max_offset, meta.rows, reason)

    async def flush_outbox(self, partition: int) -> None:
        for path, payload in await self.catalog.outbox(partition):
            event = PersistEvent.from_json(payload)
            fut = await self.topics.persisted.send(key=f"{event.database}/{event.table}".encode(),
                                                   value=payload, partition=partition)
            await fut
            await self.catalog.outbox_done(partition, path)

    async def drop_obsolete(self, partition: int, buf_id: BufferId) -> None:
        """Delete the entries of a buffer that a previous run or owner already persisted
        (watermark), or whose database was deleted after they were written."""
        bufs = self.pending.get(partition, {})
        buf = bufs.get(buf_id)
        if buf is None:
            return
        db, table, pk = buf_id
        stale = [k for k, (_, _, written_ms) in buf.entries.items()
                 if await self.catalog.is_obsolete(db, table, pk, partition,
                                                   BufferKey.decode(k).offset, written_ms)]
        for k in stale:
            del self.buffers[k]
            self.pressure.remove(partition, buf.entries[k][0])
            buf.remove(k)
        if stale and not buf.entries:
            bufs.pop(buf_id)

    async def purge_persisted(self, partition: int) -> None:
        for buf_id in list(self.pending.get(partition, {})):
            await self.drop_obsolete(partition, buf_id)

    def track_accepted(self, partition: int, headers, value: bytes) -> None:
        found = header_dict(headers)
        ref = BatchRef.from_headers(found)
        self.track(partition, BufferKey.for_batch(ref).encode(), value,
                   stats_from_headers(found, value))

    async def track_read_back(self, p: int, records, generation: int) -> None:
        for record in records:
            self.track_accepted(p, record.headers, record.value)
            self.app.consumer.ack(faust_message(record, generation))
        if records:
            self.seen[p] = max(self.seen.get(p, -1), records[-1].offset)

    async def on_event(self, msg) -> None:
        settings, guard = self.settings, self.guard
        p = msg.partition
        generation = msg.generation_id or 0
        if msg.topic == settings.accepted_topic:
            if guard.already_handled(p, msg.offset, generation):
                return  # tracked through a read-back earlier in this generation
            # an accepted batch Faust skipped would stay buffered, and then fall under the
            # watermark of the next file: read such batches back first
            await self.track_read_back(
                p, await read_back_with_retry(guard, p, msg.offset, generation), generation)
            self.track_accepted(p, msg.headers, msg.value)
            guard.handled(p, msg.offset, generation)
            self.seen[p] = max(self.seen.get(p, -1), msg.offset)
        else:
            await catch_up_tail(guard, self.app.consumer, p, generation,
                                lambda tail: self.track_read_back(p, tail, generation))
            await self.purge_persisted(p)
            await self.flush_outbox(p)
        flush = msg.topic == settings.ticks_topic and msg.value == FLUSH
        now_ms = int(time.time() * 1000)
        for buf_id, buf in list(self.pending.get(p, {}).items()):
            reason = "shutdown" if flush else (self.policy.due(buf, now_ms)
                                               or ("pressure" if self.pressure.over_cap else None))
            if reason:
                await self.persist(p, buf_id, buf, reason)
        if flush:
            self.flushed[p] = time.time()

    async def drain(self, timeout: float) -> int:
        """Catch up with every accepted batch, then persist all buffers of owned partitions."""
        app, settings = self.app, self.settings
        deadline = time.monotonic() + timeout
        await app.producer.flush()
        owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.accepted_topic]
        ends = await app.consumer.highwaters(*owned) if owned else {}
        while time.monotonic() < deadline and await self.behind(ends):
            await asyncio.sleep(0.05)
        asked = time.time()
        for tp in owned:
            await self.topics.ticks.send(key=b"tick", value=FLUSH, partition=tp.partition)
        while time.monotonic() < deadline and any(
                self.flushed.get(tp.partition, 0) < asked for tp in owned):
            await asyncio.sleep(0.05)
        left = sum(len(self.pending.get(tp.partition, {})) for tp in owned)
        log.info("drained %d partitions on shutdown (%d buffers left for the changelog)",
                 len(owned), left)
        return left

    async def behind(self, ends: dict) -> bool:
        """Whether some owned accepted partition has batches this worker has not tracked yet."""
        for tp, end in ends.items():
            done = self.seen.get(tp.partition)
            if done is None:  # nothing consumed since this worker got the partition
                done = (await self.app.consumer.position(tp) or 0) - 1
            if done < end - 1:
                return True
        return False
