"""Make sure the ingest agent sees every offset of the writes topic, whatever Faust skips.

Faust can skip records of a partition around a rebalance: a message fetched while flow control
is paused, or stamped with an older consumer generation, is acked without reaching the agent
(``faust/streams.py``), and by then the fetcher has moved past it (faust-streaming #216, #221,
#596). For ingest a skipped record is a lost write, so the agent checks each partition's
offsets. When an event arrives past the next expected offset — the offset after the last one
handled in the same consumer generation, or the group's committed offset for the first event
of a generation — the records in between are read back with a plain consumer and ingested
first. Ingest is idempotent per (partition, offset), so reading a record twice is harmless.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import Message

log = logging.getLogger("influent.ingest")

READ_TIMEOUT_S = 60.0


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
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def needs_committed(self, partition: int, generation: int) -> bool:
        known = self.expected.get(partition)
        return known is None or known.generation != generation

    async def missed(self, partition: int, offset: int, generation: int) -> list[ConsumerRecord]:
        """The records of ``partition`` before ``offset`` that the agent has not been given."""
        committed = await self._committed(partition) if self.needs_committed(partition, generation) else None
        start = gap_start(self.expected.get(partition), generation, committed)
        if start is None or offset <= start:
            return []
        records = await self._read(partition, start, offset)
        if records:
            log.warning("p%d: offsets %d..%d were not delivered by the stream; read back %d records",
                        partition, start, offset - 1, len(records))
        return records

    def handled(self, partition: int, offset: int, generation: int) -> None:
        self.expected[partition] = after(self.expected.get(partition), generation, offset)

    async def _committed(self, partition: int) -> int | None:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await self._admin.start()
        tp = TopicPartition(self.topic, partition)
        found = await self._admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        meta = found.get(tp)
        return meta.offset if meta is not None and meta.offset >= 0 else None

    async def _read(self, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        """Records with start <= offset < end (fewer where the log has no record: retention,
        transaction markers)."""
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                auto_offset_reset="earliest", max_partition_fetch_bytes=32 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024)
            await self._reader.start()
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
    delay = 0.2
    while True:
        try:
            return await guard.missed(partition, offset, generation)
        except Exception as exc:  # Kafka away or slow: the partition waits, as Faust would
            log.warning("p%d@%d: cannot check for skipped offsets (%s); retrying in %.1fs",
                        partition, offset, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
