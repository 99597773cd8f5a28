"""Ingest agent: line protocol messages on ``influent.writes`` become buffered Arrow batches.

Per message (one event at a time, so Faust knows the current event and table writes land in
the message's own changelog partition):

1-2. admit it (persist/admission.py, the same checks as the HTTP write endpoints): decode
   (header ``content-encoding``; Telegraf JSON by ``content-type`` or a leading ``{``, rendered
   to line protocol), database (header ``db``), precision (header ``precision``), parse,
   reserved names, column kinds against the catalog;
3. write one buffers-table entry per (table, partition key), publish the same batch as a Redis
   snapshot for the query API, and forward it on ``influent.accepted``;
4. send every rejected line, with its reason, to ``influent.rejected``.

Faust flushes the producer (changelog included) before it commits a source offset, so an
offset is committed only after its rows are in the changelog-backed table.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import faust
import pyarrow as pa
import pyarrow.compute as pc
import redis.exceptions
from aiokafka.structs import ConsumerRecord

from agents.offset_guard import (OffsetGuard, faust_message, read_back_with_retry,
                                 stranded_partitions, take_baselines_on_assignment)
from influent.config import Settings
from influent.failpoints import skip_once
from persist.admission import Admission, WriteRequest, admit
from persist.catalog import Catalog
from persist.partitioning import partition_keys, split_by_partition
from tables.buffers import BufferKey
from topics.declarations import PipelineTopics
from topics.line_protocol import LineError
from topics.wire import (NUDGE_HEADER, ORDER_SEQ, ORDER_TS, ROWS_PER_MESSAGE_BITS, BatchRef,
                         RejectedLine, batch_stats, encode_batch, header_dict, now)

log = logging.getLogger("influent.ingest")

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
NUDGE_EVERY_S = 30.0  # at most one nudge per partition this often


@dataclass(frozen=True)
class SourceMessage:
    """The parts of a Kafka message the ingest step needs (decoupled from Faust's types)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: dict[str, str]
    value: bytes

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> "SourceMessage":
        return cls(topic=record.topic, partition=record.partition, offset=record.offset,
                   timestamp_ms=record.timestamp, headers=header_dict(record.headers),
                   value=record.value or b"")



@dataclass
class IngestOutcome:
    """What one message turned into: buffered batches and rejected lines."""

    batches: list[tuple[BatchRef, pa.RecordBatch]] = field(default_factory=list)
    rejected: list[LineError] = field(default_factory=list)
    database: str = ""

    @property
    def rows(self) -> int:
        return sum(b.num_rows for _, b in self.batches)


def whole_message_error(body: bytes, reason: str) -> list[LineError]:
    """Reject every non-blank, non-comment line of a message with one reason."""
    errors = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        if text.strip() and not text.lstrip().startswith("#"):
            errors.append(LineError(line=number, original=text, reason=reason))
    if not errors and body.strip():
        errors.append(LineError(line=0, original="", reason=reason))
    return errors


def write_request(msg: SourceMessage, default_db: str, max_body_bytes: int) -> WriteRequest:
    """A writes-topic message as a write for the admission. A message is never refused for its
    own size (the broker bounds it); what gzip inflates it to is bounded by the body limit."""
    return WriteRequest(body=msg.value, database=msg.headers.get("db") or default_db,
                        precision=msg.headers.get("precision") or "ns",
                        content_encoding=msg.headers.get("content-encoding"),
                        default_time_ns=msg.timestamp_ms * 1_000_000,
                        max_body_bytes=max(max_body_bytes, len(msg.value)),
                        body_format="sniff", content_type=msg.headers.get("content-type"),
                        precision_given="precision" in msg.headers)


def refused_lines(admission: Admission) -> list[LineError]:
    """A refused message as rejected lines: each line with the reason, or one record (line 0)
    when the body could not be decoded (the message itself stays at its offset)."""
    refusal = admission.refusal
    if refusal.too_large or refusal.undecodable:
        return [LineError(line=0, original="", reason=f"cannot decode message body: {refusal.reason}")]
    if refusal.invalid_document:  # JSON that is not Telegraf's: one record quoting the body
        return [LineError(1, admission.body[:4096].decode("utf-8", "replace"), refusal.reason)]
    return whole_message_error(admission.body, refusal.reason)


def with_write_order(batch: pa.RecordBatch, lines: pa.Array, msg: SourceMessage) -> pa.RecordBatch:
    """Append the write-order columns used by last-write-wins dedup."""
    ts = pa.repeat(pa.scalar(msg.timestamp_ms, pa.int64()), batch.num_rows)
    seq = pc.add(pc.cast(lines, pa.int64()),
                 pa.scalar(msg.offset << ROWS_PER_MESSAGE_BITS, pa.int64()))
    return batch.append_column(ORDER_TS, ts).append_column(ORDER_SEQ, seq)


async def ingest_message(msg: SourceMessage, catalog: Catalog, default_db: str,
                         max_body_bytes: int) -> IngestOutcome:
    """Admit one writes message (persist/admission.py) and split what it accepted into
    buffer batches (no Kafka side effects)."""
    [admission] = await admit([write_request(msg, default_db, max_body_bytes)], catalog)
    db = admission.request.database
    outcome = IngestOutcome(database=db)
    if admission.refusal is not None:
        outcome.rejected = refused_lines(admission)
        return outcome
    outcome.rejected = admission.rejected
    for table in admission.tables:
        ordered = with_write_order(table.batch, table.lines, msg)
        template = await catalog.partition_template(db, table.name)
        for pk, part in split_by_partition(ordered, partition_keys(ordered, template)).items():
            if await catalog.is_obsolete(db, table.name, pk, msg.partition, msg.offset,
                                         msg.timestamp_ms):
                continue  # a replay of rows already in a file, or of a deleted database
            ref = BatchRef(db, table.name, pk, msg.topic, msg.partition, msg.offset)
            outcome.batches.append((ref, part))
    return outcome


def register_ingest(app: faust.App, settings: Settings, topics: PipelineTopics,
                    buffers: faust.Table) -> None:
    guard = OffsetGuard(settings.kafka_bootstrap, app.conf.id, settings.writes_topic)
    take_baselines_on_assignment(app, guard)
    ingester = Ingester(app, settings, topics, buffers, guard,
                        Catalog.connect(settings.redis_url, settings.app_id))

    @app.agent(topics.writes, name="ingest")
    async def ingest(stream):
        try:
            async for event in stream.events():
                await ingester.on_event(event.message)
        finally:
            await guard.close()

    @app.timer(settings.tick_interval)
    async def nudge_stranded_partitions() -> None:
        await ingester.nudge_stranded_partitions()

    buffers.on_recover(ingester.republish_snapshots)


class Ingester:
    """The ingest agent's work: each writes message -> buffered batches (with their Redis
    snapshots) and accepted batches, its bad lines -> the rejected topic; messages Faust passed
    over are read back first."""

    def __init__(self, app: faust.App, settings: Settings, topics: PipelineTopics,
                 buffers: faust.Table, guard: OffsetGuard, catalog: Catalog):
        self.app = app
        self.settings = settings
        self.topics = topics
        self.buffers = buffers
        self.guard = guard
        self.catalog = catalog
        self.nudged: dict[int, float] = {}  # partition -> monotonic time of its last nudge

    async def publish(self, msg: SourceMessage, outcome: IngestOutcome) -> None:
        buffers, topics, catalog = self.buffers, self.topics, self.catalog
        snapshots = []
        for ref, batch in outcome.batches:
            data = encode_batch(batch)
            key = BufferKey.for_batch(ref)
            buffers[key.encode()] = data
            snapshots.append((ref.database, ref.table, key.snapshot_field, data))
            headers = ref.headers()
            if "origin" in msg.headers:  # who wrote it (e.g. a trigger), for the loop guard
                headers["origin"] = msg.headers["origin"].encode()
            await topics.accepted.send(key=f"{ref.database}/{ref.table}".encode(), value=data,
                                       partition=msg.partition, headers=headers)
        await catalog.put_snapshots(snapshots)
        received = now()
        for err in outcome.rejected:
            record = RejectedLine(outcome.database, err.line, err.original, err.reason,
                                  msg.topic, msg.partition, msg.offset, received)
            await topics.rejected.send(key=outcome.database.encode(), value=record.to_json(),
                                       partition=msg.partition)

    async def handle(self, msg: SourceMessage) -> None:
        catalog, settings = self.catalog, self.settings
        delay = 0.2
        while True:
            try:
                outcome = await ingest_message(msg, catalog, settings.default_db,
                                               settings.max_body_bytes)
                await self.publish(msg, outcome)
                if outcome.rejected:
                    log.info("p%d@%d: %d rows buffered, %d lines rejected", msg.partition,
                             msg.offset, outcome.rows, len(outcome.rejected))
                return
            except TRANSIENT as exc:  # Redis away: wait for it, never drop the write
                log.warning("p%d@%d: catalog unavailable (%s); retrying in %.1fs",
                            msg.partition, msg.offset, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a bug must not stop the partition or lose the lines
                log.exception("p%d@%d: ingest failed", msg.partition, msg.offset)
                outcome = IngestOutcome(database=msg.headers.get("db") or settings.default_db)
                outcome.rejected = whole_message_error(msg.value, f"internal error: {exc!r}")
                await self.publish(msg, outcome)
                return

    async def handle_read_back(self, records: list[ConsumerRecord], generation: int) -> None:
        for record in records:
            await self.handle(SourceMessage.from_record(record))
            self.app.consumer.ack(faust_message(record, generation))  # so Faust commits past it

    async def on_event(self, m) -> None:
        """One message of the writes topic, as the agent's stream delivers it."""
        guard = self.guard
        generation = m.generation_id or 0
        if guard.already_handled(m.partition, m.offset, generation):
            return  # read back from Kafka earlier in this generation
        if skip_once("skip_first_write"):
            return  # fault test: passed over unhandled, as Faust does around a rebalance
        await self.handle_read_back(
            await read_back_with_retry(guard, m.partition, m.offset, generation), generation)
        headers = header_dict(m.headers)
        if NUDGE_HEADER not in headers:
            await self.handle(SourceMessage(
                topic=m.topic, partition=m.partition, offset=m.offset,
                timestamp_ms=int(round((m.timestamp or now()) * 1000)),
                headers=headers, value=m.value or b""))
        guard.handled(m.partition, m.offset, generation)

    async def nudge_stranded_partitions(self) -> None:
        """A record Faust skipped at the end of a partition has no later record to reveal it:
        send one, an empty nudge, so the agent reads the tail back in an event of its own."""
        app, settings, nudged = self.app, self.settings, self.nudged
        for p in await stranded_partitions(self.guard, app.consumer, app.consumer_generation_id):
            if time.monotonic() - nudged.get(p, float("-inf")) < NUDGE_EVERY_S:
                continue
            nudged[p] = time.monotonic()
            log.warning("%s p%d: the stream delivered nothing for a while yet the partition has "
                        "more records; nudging it", settings.writes_topic, p)
            try:
                await self.topics.writes.send(key=b"nudge", value=b"", partition=p,
                                              headers={NUDGE_HEADER: b"1"})
            except Exception as exc:  # Kafka away: the next tick nudges again
                log.warning("%s p%d: cannot nudge (%s)", settings.writes_topic, p, exc)
                nudged.pop(p, None)

    async def republish_snapshots(self) -> None:
        """Make Redis hold a snapshot of every buffered batch this worker owns (idempotent)."""
        catalog = self.catalog
        items = []
        for raw_key, data in self.buffers.items():
            if data is None:
                continue
            key = BufferKey.decode(raw_key)
            if await catalog.is_obsolete(key.database, key.table, key.partition_key,
                                         key.source_partition, key.offset, batch_stats(data)[1]):
                continue  # already in a file or deleted; the persist agent purges the entry
            items.append((key.database, key.table, key.snapshot_field, data))
        missing = await catalog.missing_snapshots(items)
        await catalog.put_snapshots(missing)
        log.info("recovered %d buffered batches (%d republished to Redis)", len(items), len(missing))
