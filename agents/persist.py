"""Persist agent: turns buffers into Parquet files on the object store.

Driven by ``influent.accepted`` (each accepted batch) and ``influent.ticks`` (periodic, one tick
per partition, since Faust timers cannot write tables), both co-partitioned with the buffers
table. A buffer — (database, table, partition key) of one source partition — is persisted when
it passes the row or byte threshold or when its oldest batch is older than the maximum age.

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
from dataclasses import dataclass, field, replace

import faust
import pyarrow as pa

from agents.offset_guard import (OffsetGuard, catch_up_tail, faust_message, read_back_with_retry,
                                 take_baselines_on_assignment)
from influent.config import Settings
from influent.failpoints import failpoint
from persist.catalog import Catalog
from persist.object_store import ObjectStore, open_store
from persist.parquet_files import ParquetFileMeta, build_parquet, file_id, object_path
from persist.persist_events import PersistEvent
from tables.buffers import BufferKey
from topics.declarations import PipelineTopics
from topics.wire import BatchRef, batch_stats, decode_batches, header_dict

log = logging.getLogger("influent.persist")

BufferId = tuple[str, str, str]  # database, table, partition key


@dataclass
class PendingBuffer:
    """What is buffered for one (database, table, partition key) of one source partition.

    Totals are kept as entries come and go, so checking a buffer on every event costs O(1)
    however many batches it holds."""

    entries: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)  # key -> (bytes, rows, written ms)
    rows: int = 0
    bytes: int = 0
    oldest_ms: int = 0

    def add(self, key: bytes, size: int, rows: int, written_ms: int) -> None:
        if key in self.entries:
            return
        self.entries[key] = (size, rows, written_ms)
        self.rows += rows
        self.bytes += size
        self.oldest_ms = written_ms if not self.oldest_ms else min(self.oldest_ms, written_ms)

    def remove(self, key: bytes) -> None:
        size, rows, _ = self.entries.pop(key)
        self.rows -= rows
        self.bytes -= size
        self.oldest_ms = min((w for _, _, w in self.entries.values()), default=0)


def due(buf: PendingBuffer, settings: Settings, now_ms: int) -> str | None:
    """Why this buffer must be persisted now (pure), or None."""
    if not buf.entries:
        return None
    if buf.rows >= settings.persist_max_rows:
        return "rows"
    if buf.bytes >= settings.persist_max_bytes:
        return "bytes"
    if now_ms - buf.oldest_ms >= settings.persist_max_age * 1000:
        return "age"
    return None


FLUSH = b"flush"


def register_persist(app: faust.App, settings: Settings, topics: PipelineTopics,
                     buffers: faust.Table) -> Callable[[float], Awaitable[int]]:
    """Register the persist agent; returns ``drain(timeout)``, which persists every buffer this
    worker owns (used on clean shutdown) and returns how many buffers were left over."""
    catalog = Catalog.connect(settings.redis_url, settings.app_id)
    store: ObjectStore = open_store(settings)
    pending: dict[int, dict[BufferId, PendingBuffer]] = defaultdict(lambda: defaultdict(PendingBuffer))
    guard = OffsetGuard(settings.kafka_bootstrap, app.conf.id, settings.accepted_topic)
    take_baselines_on_assignment(app, guard)

    def track(partition: int, raw_key: bytes, data: bytes) -> None:
        key = BufferKey.decode(raw_key)
        rows, written_ms = batch_stats(data)
        pending[partition][(key.database, key.table, key.partition_key)].add(
            raw_key, len(data), rows, written_ms)

    @buffers.on_recover
    async def rebuild_pending() -> None:
        pending.clear()
        for raw_key, data in buffers.items():
            if data is not None:
                track(BufferKey.decode(raw_key).source_partition, raw_key, data)
        log.info("tracking %d buffers after recovery",
                 sum(len(v) for v in pending.values()))

    async def persist(partition: int, buf_id: BufferId, buf: PendingBuffer, reason: str) -> None:
        db, table, pk = buf_id
        await drop_obsolete(partition, buf_id)
        keys = sorted(buf.entries)
        offsets = [BufferKey.decode(k).offset for k in keys]
        values = [buffers[k] for k in keys]
        present = [(k, v) for k, v in zip(keys, values) if v is not None]
        if present:
            schema = await catalog.table_schema(db, table)
            meta = ParquetFileMeta(
                database=db, table=table, partition_key=pk, path="", file_id="", size=0, rows=0,
                min_time=0, max_time=0, source_topic=settings.writes_topic,
                source_partition=partition, min_offset=min(offsets), max_offset=max(offsets),
                max_write_ts=0, max_write_seq=0, columns=schema.columns, created_at=time.time())
            fid = file_id(partition, meta.min_offset, meta.max_offset)
            meta = replace(meta, file_id=fid, path=object_path(db, table, pk, fid))

            def write() -> ParquetFileMeta:
                data = pa.concat_tables([decode_batches(v) for _, v in present],
                                        promote_options="default")
                body, done = build_parquet(data, schema.tags, meta)
                store.put(done.path, body)
                return done

            meta = await asyncio.to_thread(write)
            failpoint("after_object_write")
            event = PersistEvent.from_meta(meta, store.object_url(meta.path), store.url)
            snapshot_fields = [BufferKey.decode(k).snapshot_field for k, _ in present]
            await catalog.commit_file(meta, snapshot_fields, outbox=event.to_json())
            failpoint("after_catalog_commit")
            log.info("persisted %s/%s/%s p%d offsets %d-%d: %d rows (%s)", db, table, pk, partition,
                     meta.min_offset, meta.max_offset, meta.rows, reason)
        for k in keys:
            del buffers[k]
        pending[partition].pop(buf_id, None)
        failpoint("before_event")
        await flush_outbox(partition)

    async def flush_outbox(partition: int) -> None:
        for path, payload in await catalog.outbox(partition):
            event = PersistEvent.from_json(payload)
            fut = await topics.persisted.send(key=f"{event.database}/{event.table}".encode(),
                                              value=payload, partition=partition)
            await fut
            await catalog.outbox_done(partition, path)

    async def drop_obsolete(partition: int, buf_id: BufferId) -> None:
        """Delete the entries of a buffer that a previous run or owner already persisted
        (watermark), or whose database was deleted after they were written."""
        bufs = pending.get(partition, {})
        buf = bufs.get(buf_id)
        if buf is None:
            return
        db, table, pk = buf_id
        stale = [k for k, (_, _, written_ms) in buf.entries.items()
                 if await catalog.is_obsolete(db, table, pk, partition,
                                              BufferKey.decode(k).offset, written_ms)]
        for k in stale:
            del buffers[k]
            buf.remove(k)
        if stale and not buf.entries:
            bufs.pop(buf_id)

    async def purge_persisted(partition: int) -> None:
        for buf_id in list(pending.get(partition, {})):
            await drop_obsolete(partition, buf_id)

    @app.agent(app.topic(settings.accepted_topic, settings.ticks_topic,
                         partitions=settings.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw"), name="persist")
    async def persist_agent(stream):
        try:
            async for event in stream.events():
                await on_event(event.message)
        finally:
            await guard.close()

    def track_accepted(partition: int, headers, value: bytes) -> None:
        ref = BatchRef.from_headers(header_dict(headers))
        track(partition, BufferKey.for_batch(ref).encode(), value)

    async def track_read_back(p: int, records, generation: int) -> None:
        for record in records:
            track_accepted(p, record.headers, record.value)
            app.consumer.ack(faust_message(record, generation))
        if records:
            seen[p] = max(seen.get(p, -1), records[-1].offset)

    async def on_event(msg) -> None:
        p = msg.partition
        generation = msg.generation_id or 0
        if msg.topic == settings.accepted_topic:
            if guard.already_handled(p, msg.offset, generation):
                return  # tracked through a read-back earlier in this generation
            # an accepted batch Faust skipped would stay buffered, and then fall under the
            # watermark of the next file: read such batches back first
            await track_read_back(p, await read_back_with_retry(guard, p, msg.offset, generation),
                                  generation)
            track_accepted(p, msg.headers, msg.value)
            guard.handled(p, msg.offset, generation)
            seen[p] = max(seen.get(p, -1), msg.offset)
        else:
            await catch_up_tail(guard, app.consumer, p, generation,
                                lambda tail: track_read_back(p, tail, generation))
            await purge_persisted(p)
            await flush_outbox(p)
        flush = msg.topic == settings.ticks_topic and msg.value == FLUSH
        now_ms = int(time.time() * 1000)
        for buf_id, buf in list(pending.get(p, {}).items()):
            reason = "shutdown" if flush else due(buf, settings, now_ms)
            if reason:
                await persist(p, buf_id, buf, reason)
        if flush:
            flushed[p] = time.time()

    seen: dict[int, int] = {}  # accepted partition -> highest offset tracked
    flushed: dict[int, float] = {}  # partition -> time its last flush tick was handled

    async def drain(timeout: float) -> int:
        """Catch up with every accepted batch, then persist all buffers of owned partitions."""
        deadline = time.monotonic() + timeout
        await app.producer.flush()
        owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.accepted_topic]
        ends = await app.consumer.highwaters(*owned) if owned else {}
        async def behind() -> bool:
            for tp, end in ends.items():
                done = seen.get(tp.partition)
                if done is None:  # nothing consumed since this worker got the partition
                    done = (await app.consumer.position(tp) or 0) - 1
                if done < end - 1:
                    return True
            return False

        while time.monotonic() < deadline and await behind():
            await asyncio.sleep(0.05)
        asked = time.time()
        for tp in owned:
            await topics.ticks.send(key=b"tick", value=FLUSH, partition=tp.partition)
        while time.monotonic() < deadline and any(
                flushed.get(tp.partition, 0) < asked for tp in owned):
            await asyncio.sleep(0.05)
        left = sum(len(pending.get(tp.partition, {})) for tp in owned)
        log.info("drained %d partitions on shutdown (%d buffers left for the changelog)",
                 len(owned), left)
        return left

    @app.timer(settings.tick_interval)
    async def send_ticks() -> None:
        for p in range(settings.partitions):
            await topics.ticks.send(key=b"tick", value=str(time.time()).encode(), partition=p)

    return drain
