"""Ingest: line protocol messages on ``influent.writes`` become buffered Arrow batches.

The writes partitions this worker owns are read in record batches by a
:class:`~agents.partition_reader.PartitionReader` (below Faust's per-record events); each batch
of one partition:

1. is parsed, validated and split in one pass per (database, precision) group against the
   worker's cached catalog (:mod:`agents.batch_ingest`, :mod:`agents.catalog_cache`);
2. becomes one buffers-table entry per (database, table, partition key), one Redis snapshot
   write (one pipeline for the batch) and one ``influent.accepted`` message per entry;
3. sends every rejected line, with its reason, to ``influent.rejected``;
4. writes the partition's position (the next offset) into the buffers table, after its entries.

The entries and the position go to the same changelog partition in that order, so a position in
the changelog always has its rows before it: a restart or a takeover resumes there (see
docs/ingest.md). Offsets replayed after a crash are ingested again with the same rows.
"""
from __future__ import annotations

import asyncio
import logging
import time

import faust
import redis.exceptions
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from agents.backpressure import BufferedBytes
from agents.batch_ingest import (BatchOutcome, BufferEntry, Rejection, WriteMessage, ingest_batch,
                                 whole_message_error)
from agents.catalog_cache import CatalogCache
from agents.partition_reader import BatchLimits, PartitionReader, partition_context
from influent.config import Settings
from influent.failpoints import failpoint
from persist.catalog import Catalog
from tables.buffers import BufferKey, is_position_key, position_key
from topics.declarations import PipelineTopics
from topics.wire import BatchRef, RejectedLine, batch_stats, encode_batch, now, stats_headers

log = logging.getLogger("influent.ingest")

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_records=settings.ingest_max_rows, max_bytes=settings.ingest_max_bytes,
                       max_wait_ms=settings.ingest_max_wait_ms)


def describe(batch: dict[int, list[ConsumerRecord]]) -> str:
    """``p3@10-12 p5@7-7``: the partitions and offsets of a batch, for the log."""
    return " ".join(f"p{p}@{records[0].offset}-{records[-1].offset}"
                    for p, records in sorted(batch.items()))


class IngestDelay:
    """How long after it was produced a batch's newest record was buffered (for the log: a
    growing figure means ingest is behind)."""

    def __init__(self, every_s: float = 30.0):
        self.every_s = every_s
        self.worst_ms = 0
        self.records = 0
        self.batches = 0
        self.since = time.monotonic()

    def note(self, produced_ms: int, records: int) -> None:
        self.worst_ms = max(self.worst_ms, int(time.time() * 1000) - produced_ms)
        self.records += records
        self.batches += 1
        if time.monotonic() - self.since >= self.every_s:
            log.info("ingested %d records in %d batches in the last %.0f s; newest record "
                     "buffered at most %d ms after it was produced", self.records, self.batches,
                     time.monotonic() - self.since, self.worst_ms)
            self.worst_ms = self.records = self.batches = 0
            self.since = time.monotonic()


class Ingestor:
    """The ingest path of one worker: reads its writes partitions in batches and turns each
    batch into buffer entries, snapshots, accepted and rejected messages, then its position."""

    def __init__(self, app: faust.App, settings: Settings, topics: PipelineTopics,
                 buffers: faust.Table, catalog: Catalog, pressure: BufferedBytes):
        self.app = app
        self.pressure = pressure
        self.settings = settings
        self.topics = topics
        self.buffers = buffers
        self.catalog = catalog
        self.cache = CatalogCache(catalog)
        self.reader = PartitionReader(settings.kafka_bootstrap, settings.writes_topic,
                                      batch_limits(settings), self.handle,
                                      report_group=settings.ingest_group,
                                      gate=pressure.wait_below)
        self.running: list[asyncio.Task] = []
        self.delay = IngestDelay()

    async def publish(self, outcome: BatchOutcome, next_offsets: dict[int, int]) -> None:
        """Per partition, in this order: its entries (buffers table) and accepted messages; the
        snapshots of all partitions (one Redis pipeline); per partition its rejected lines and
        then its position (the next offset), which so always follows its rows."""
        snapshots = []
        topic = self.settings.writes_topic
        for partition in sorted(next_offsets):
            with partition_context(self.app, topic, partition):
                for entry in outcome.entries:
                    if entry.partition == partition:
                        snapshots.append(await self.buffer(partition, entry))
        await self.catalog.put_snapshots(snapshots)
        received = now()
        for partition, next_offset in sorted(next_offsets.items()):
            with partition_context(self.app, topic, partition):
                for r in outcome.rejected:
                    if r.message.partition != partition:
                        continue
                    record = RejectedLine(r.database, r.error.line, r.error.original,
                                          r.error.reason, r.message.topic, r.message.partition,
                                          r.message.offset, received)
                    await self.topics.rejected.send(key=r.database.encode(),
                                                    value=record.to_json(), partition=partition)
                failpoint("ingest_before_position")
                self.buffers[position_key(partition)] = str(next_offset).encode()

    async def buffer(self, partition: int, entry: BufferEntry) -> tuple[str, str, str, bytes]:
        """Write one entry to the buffers table and the accepted topic; its snapshot item."""
        data = encode_batch(entry.rows)
        key = BufferKey.of(entry.database, entry.table, entry.partition_key, partition,
                           entry.offset)
        raw_key = key.encode()
        if raw_key not in self.buffers:  # a replay rewrites an entry: count it once
            self.pressure.add(partition, len(data))
        self.buffers[raw_key] = data
        ref = BatchRef(entry.database, entry.table, entry.partition_key,
                       self.settings.writes_topic, partition, entry.offset)
        headers = ref.headers() | stats_headers(entry.rows)
        if entry.origin is not None:  # who wrote it (e.g. a trigger), for the loop guard
            headers["origin"] = entry.origin.encode()
        await self.topics.accepted.send(key=f"{entry.database}/{entry.table}".encode(),
                                        value=data, partition=partition, headers=headers)
        return entry.database, entry.table, key.snapshot_field, data

    async def handle(self, batch: dict[int, list[ConsumerRecord]]) -> None:
        """One fetch: the records of every partition, admitted together."""
        messages = [WriteMessage.from_record(r) for records in batch.values() for r in records]
        next_offsets = {p: records[-1].offset + 1 for p, records in batch.items()}
        delay = 0.2
        while True:
            try:
                outcome = await ingest_batch(messages, self.cache, self.settings.default_db,
                                             self.settings.max_body_bytes)
                await self.publish(outcome, next_offsets)
                self.delay.note(max(records[-1].timestamp for records in batch.values()),
                                len(messages))
                if outcome.rejected:
                    log.info("%s: %d rows buffered, %d lines rejected", describe(batch),
                             outcome.rows, len(outcome.rejected))
                return
            except TRANSIENT as exc:  # Redis away: wait for it, never drop the write
                log.warning("%s: catalog unavailable (%s); retrying in %.1fs", describe(batch),
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a bug must not stop the partition or lose the lines
                log.exception("%s: ingest failed", describe(batch))
                rejected = [Rejection(m.headers.get("db") or self.settings.default_db, e, m)
                            for m in messages
                            for e in whole_message_error(m.value, f"internal error: {exc!r}")]
                await self.publish(BatchOutcome(rejected=rejected), next_offsets)
                return

    async def committed_by_faust(self, partitions: list[int]) -> dict[int, int]:
        """Where Faust's own stream stopped, for partitions without a position yet (a worker
        that ingested through a Faust agent before)."""
        if not partitions:
            return {}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            tps = [TopicPartition(self.settings.writes_topic, p) for p in partitions]
            found = await admin.list_consumer_group_offsets(self.app.conf.id, partitions=tps)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in found.items()
                if meta is not None and meta.offset >= 0}

    def owned_partitions(self) -> list[int]:
        changelog = self.buffers.changelog_topic_name
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives()
                      if tp.topic == changelog)

    async def start_reading(self) -> None:
        """After table recovery: republish the snapshots, then read each owned partition from
        its position (recovered with the buffers)."""
        await self.republish_snapshots()
        sizes: dict[int, int] = {}
        for raw_key, data in self.buffers.items():
            if data is not None and not is_position_key(raw_key):
                p = BufferKey.decode(raw_key).source_partition
                sizes[p] = sizes.get(p, 0) + len(data)
        self.pressure.reset(sizes)
        starts: dict[int, int | None] = {}
        for p in self.owned_partitions():
            raw = self.buffers.get(position_key(p))
            starts[p] = int(raw) if raw else None
            await self.cache.take_partition(p)
        try:
            starts.update(await self.committed_by_faust([p for p, s in starts.items() if s is None]))
        except Exception as exc:  # no group offsets to look at: the log's start (idempotent)
            log.warning("cannot read the group's committed offsets (%s)", exc)
        await self.reader.take(starts)
        if not self.running:
            self.running.append(asyncio.ensure_future(self.reader.run()))

    async def stop_reading(self, sender=None, revoked=None, **kwargs) -> None:
        """A rebalance: finish the batch at hand, stop, and flush its changelog records before
        another worker can recover the partitions."""
        await self.reader.release()
        await self.app.producer.flush()

    async def republish_snapshots(self) -> None:
        """Make Redis hold a snapshot of every buffered batch this worker owns (idempotent)."""
        items = []
        for raw_key, data in self.buffers.items():
            if data is None or is_position_key(raw_key):
                continue
            key = BufferKey.decode(raw_key)
            if await self.catalog.is_obsolete(key.database, key.table, key.partition_key,
                                              key.source_partition, key.offset,
                                              batch_stats(data)[1]):
                continue  # already in a file or deleted; the persist agent purges the entry
            items.append((key.database, key.table, key.snapshot_field, data))
        missing = await self.catalog.missing_snapshots(items)
        await self.catalog.put_snapshots(missing)
        log.info("recovered %d buffered batches (%d republished to Redis)", len(items), len(missing))

    async def stop(self) -> None:
        """Shutdown: no batch after this one; the consumer closed, the producer flushed."""
        await self.reader.release()
        for task in self.running:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.running.clear()
        await self.reader.close()
        await self.app.producer.flush()


def register_ingest(app: faust.App, settings: Settings, topics: PipelineTopics,
                    buffers: faust.Table, pressure: BufferedBytes):
    """Register the ingest path on ``app``; returns ``stop()``, which ends reading (shutdown).
    ``pressure`` is shared with the persist agent (agents/backpressure.py)."""
    ingestor = Ingestor(app, settings, topics, buffers,
                        Catalog.connect(settings.redis_url, settings.app_id), pressure)
    buffers.on_recover(ingestor.start_reading)
    app.on_partitions_revoked.connect(ingestor.stop_reading)
    return ingestor.stop
