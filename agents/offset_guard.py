"""Make sure a Faust agent sees every offset of its topic, whatever Faust skips (used by the
persist agent over ``influent.accepted``; the writes topic is read below Faust, docs/ingest.md).

Faust can skip records of a partition around a rebalance: a message fetched while flow control
is paused, or stamped with an older consumer generation, is acked without reaching the agent
(``faust/streams.py``), and by then the fetcher has moved past it (faust-streaming #216, #221,
#596). A skipped accepted batch is a buffer the persist agent never tracks, so the agent checks
each partition's offsets. When an event arrives past the next expected offset — the offset
after the last one handled in the same consumer generation, or the group's committed offset
for the first event of a generation — the records in between are read back with a plain consumer and handled
first. Handling is idempotent per (partition, offset), so reading a record twice is harmless.

A skipped record that no later record follows would never be noticed that way: its tail is
*stranded* when the partition's end offset (as the consumer last fetched it) is beyond the
next expected offset and the stream has delivered nothing on the partition for a while. The
persist agent reads such a tail back on its next tick of the partition. Events the agent
already handled through a read-back are recognised and passed over when the stream delivers
them after all.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import Message

from influent.model import MAX_FETCH_BYTES, MAX_MESSAGE_BYTES

log = logging.getLogger("influent.ingest")

READ_TIMEOUT_S = 60.0
TAIL_IDLE_S = 10.0  # no delivery on a partition for this long before its tail is read back
TAIL_MAX_RECORDS = 500  # read back per tick at most, so a surprise backlog is caught up in steps


@dataclass(frozen=True)
class Expected:
    """The next offset a partition should deliver, as seen in one consumer generation."""

    generation: int
    offset: int


def gap_start(expected: Expected | None, generation: int, committed: int | None) -> int | None:
    """The first offset the agent must have handled before the current event (pure): within a
    generation the offset after the last handled one; in a new one the group's committed offset,
    where Faust resumes (None for a group without one: nothing to compare with)."""
    if expected is not None and expected.generation == generation:
        return expected.offset
    return committed


def after(expected: Expected | None, generation: int, offset: int) -> Expected:
    """The expectation once ``offset`` is handled (pure); a replayed older offset never lowers it."""
    if expected is not None and expected.generation == generation:
        return Expected(generation, max(expected.offset, offset + 1))
    return Expected(generation, offset + 1)


def stranded_range(start: int | None, end: int | None, idle_s: float,
                   idle_needed_s: float = TAIL_IDLE_S,
                   max_records: int = TAIL_MAX_RECORDS) -> tuple[int, int] | None:
    """The offsets [first, stop) of a partition's tail that the stream never delivered (pure).

    ``start`` is the next offset the agent expects and ``end`` the partition's end offset as
    the consumer last fetched it. Nothing is stranded while deliveries are recent: the
    consumer may still be fetching, or the stream may still hold the records."""
    if start is None or end is None or idle_s < idle_needed_s or start >= end:
        return None
    return start, min(end, start + max_records)


def faust_message(record: ConsumerRecord, generation: int) -> Message:
    """A Faust message for a record read back outside the stream, so that acknowledging it
    (``app.consumer.ack``) lets Faust commit past it."""
    return Message(record.topic, record.partition, record.offset, record.timestamp / 1000,
                   record.timestamp_type, record.headers, record.key, record.value, record.checksum,
                   tp=TP(record.topic, record.partition), generation_id=generation)


class OffsetGuard:
    """Per-partition offset check for one Faust consumer group on one topic."""

    def __init__(self, bootstrap: str, group_id: str, topic: str):
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topic = topic
        self.expected: dict[int, Expected] = {}
        self.last_delivery: dict[int, float] = {}  # partition -> monotonic time of its last event
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def needs_committed(self, partition: int, generation: int) -> bool:
        known = self.expected.get(partition)
        return known is None or known.generation != generation

    def already_handled(self, partition: int, offset: int, generation: int) -> bool:
        """Whether a delivered event was handled before, through a read-back of this generation."""
        known = self.expected.get(partition)
        return known is not None and known.generation == generation and offset < known.offset

    async def _start(self, partition: int, generation: int) -> int | None:
        """The next offset the agent expects on ``partition`` in ``generation``; where Faust
        resumes (the group's committed offset) is asked for once per generation and remembered."""
        known = self.expected.get(partition)
        if not self.needs_committed(partition, generation):
            return gap_start(known, generation, None)
        start = gap_start(known, generation, await self._resume_offset(partition))
        if start is not None:
            self.expected[partition] = Expected(generation, start)
        return start

    async def baseline(self, partition: int, generation: int) -> None:
        """Take the offset a partition resumes at in a new generation, best right when it is
        assigned, before Faust can commit past a record it drops; its quiet period starts now."""
        if self.needs_committed(partition, generation):
            await self._start(partition, generation)
            self.last_delivery[partition] = time.monotonic()

    async def missed(self, partition: int, offset: int, generation: int) -> list[ConsumerRecord]:
        """The records of ``partition`` before ``offset`` that the agent has not been given."""
        start = await self._start(partition, generation)
        if start is None or offset <= start:
            return []
        records = await self._read(partition, start, offset)
        if records:
            log.warning("%s p%d: offsets %d..%d were not delivered by the stream; read back %d "
                        "records", self.topic, partition, start, offset - 1, len(records))
        return records

    async def stranded_span(self, partition: int, generation: int,
                            end: int | None) -> tuple[int, int] | None:
        """The tail offsets of ``partition`` before ``end`` the stream never delivered, if any."""
        if self.needs_committed(partition, generation):
            await self.baseline(partition, generation)  # its stream may not have started yet
            return None
        idle = time.monotonic() - self.last_delivery.get(partition, float("-inf"))
        return stranded_range(self.expected[partition].offset, end, idle)

    async def stranded(self, partition: int, generation: int,
                       end: int | None) -> list[ConsumerRecord]:
        """The records of :meth:`stranded_span`, read back."""
        span = await self.stranded_span(partition, generation, end)
        if span is None:
            return []
        records = await self._read(partition, *span)
        if records:
            log.warning("%s p%d: offsets %d..%d were fetched but not delivered by the stream; "
                        "read back %d records", self.topic, partition, span[0], span[1] - 1,
                        len(records))
        return records

    def handled(self, partition: int, offset: int, generation: int, delivered: bool = True) -> None:
        self.expected[partition] = after(self.expected.get(partition), generation, offset)
        if delivered:
            self.last_delivery[partition] = time.monotonic()

    async def _resume_offset(self, partition: int) -> int | None:
        """The group's committed offset, or for a partition without one the start of the log
        (Faust's ``consumer_auto_offset_reset`` is ``earliest``)."""
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await self._admin.start()
        tp = TopicPartition(self.topic, partition)
        found = await self._admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        meta = found.get(tp)
        if meta is not None and meta.offset >= 0:
            return meta.offset
        return (await (await self._reader_client()).beginning_offsets([tp])).get(tp)

    async def _reader_client(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                fetch_max_bytes=MAX_FETCH_BYTES)
            await self._reader.start()
        return self._reader

    async def _read(self, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        """Records with start <= offset < end (fewer where the log has no record: retention,
        transaction markers)."""
        await self._reader_client()
        tp = TopicPartition(self.topic, partition)
        self._reader.assign([tp])
        self._reader.seek(tp, start)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while await self._reader.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read back offsets {start}..{end - 1} of {tp}")
            fetched = await self._reader.getmany(tp, timeout_ms=1000)
            records.extend(r for r in fetched.get(tp, []) if start <= r.offset < end)
        return records

    async def close(self) -> None:
        for client in (self._reader, self._admin):
            if client is not None:
                try:
                    await client.stop() if isinstance(client, AIOKafkaConsumer) else await client.close()
                except Exception:  # closing on shutdown: nothing left to protect
                    log.debug("closing the offset guard's client failed", exc_info=True)
        self._reader = self._admin = None


async def read_back_with_retry(guard: OffsetGuard, partition: int, offset: int,
                               generation: int) -> list[ConsumerRecord]:
    """``guard.missed`` until it succeeds: a write must never be skipped because Kafka hiccupped."""
    return await _with_retry(lambda: guard.missed(partition, offset, generation), partition, offset)


def _fetched_end(consumer, tp: TP) -> int | None:
    """The end offset of a partition as a Faust consumer last fetched it (no request)."""
    try:
        return consumer.highwater(tp)
    except Exception:  # not assigned (any more): nothing to look at
        return None


async def catch_up_tail(guard: OffsetGuard, consumer, partition: int, generation: int,
                        take: Callable[[list[ConsumerRecord]], Awaitable[None]]) -> None:
    """Hand ``guard``'s stranded tail of one partition to ``take`` (from inside an event of that
    partition), then expect the offset after it; a failed look is tried again next time."""
    try:
        records = await guard.stranded(partition, generation,
                                       _fetched_end(consumer, TP(guard.topic, partition)))
    except Exception as exc:  # Kafka away: the next tick looks again
        log.debug("%s p%d: cannot look for a stranded tail (%s)", guard.topic, partition, exc)
        return
    if records:
        await take(records)
        guard.handled(partition, records[-1].offset, generation, delivered=False)


def take_baselines_on_assignment(app, guard: OffsetGuard) -> None:
    """When partitions of ``guard``'s topic are assigned, note where each resumes before the
    stream starts (a failure only delays this to the partition's first event or look)."""
    @app.on_partitions_assigned.connect
    async def take_baselines(sender, assigned, **kwargs) -> None:
        generation = app.consumer_generation_id
        for tp in sorted(assigned):
            if tp.topic != guard.topic:
                continue
            try:
                await guard.baseline(tp.partition, generation)
            except Exception as exc:  # Kafka slow: the first event or look takes it instead
                log.warning("%s p%d: no baseline at assignment (%s)", guard.topic, tp.partition, exc)


async def _with_retry(read, partition: int, offset: int) -> list[ConsumerRecord]:
    delay = 0.2
    while True:
        try:
            return await read()
        except Exception as exc:  # Kafka away or slow: the partition waits, as Faust would
            log.warning("p%d@%d: cannot check for skipped offsets (%s); retrying in %.1fs",
                        partition, offset, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
