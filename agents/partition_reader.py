"""Read the writes partitions Faust assigned to this worker in record batches, below Faust's
per-record event layer (a Faust agent takes ~7 500 events/s whatever it does; a plain
``getmany`` reads hundreds of thousands of records/s, see DESIGN.md).

Faust keeps group membership and assignment: the partitions read are those whose buffers-table
changelog partition is active here, taken when table recovery completes and released when a
rebalance revokes them. Each partition resumes at its *position* — the next offset to ingest,
which the batch handler writes into the buffers table after the batch's own entries (so a
position never runs ahead of the buffered rows; docs/ingest.md). Records are handed over
contiguously from there, so no offset is ever passed over.

Table writes need Faust's "current event" (the changelog partition is taken from it): the
handler runs inside :func:`partition_context`, an event of its own for the partition.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.events import Event
from faust.streams import _current_event
from faust.types import TP
from faust.types.tuples import Message

log = logging.getLogger("influent.ingest")

IDLE_FETCH_WAIT_MS = 500

#: Handler of one fetch: records of each partition (in offset order, contiguous from the
#: partition's position), by partition.
BatchHandler = Callable[[dict[int, list[ConsumerRecord]]], Awaitable[None]]


@dataclass(frozen=True)
class BatchLimits:
    """Bounds of one fetch: records and bytes per batch, and how long to wait for any."""

    max_records: int = 20_000
    max_bytes: int = 16 * 1024 * 1024
    max_wait_ms: int = 20


@contextmanager
def partition_context(app: faust.App, topic: str, partition: int) -> Iterator[None]:
    """Make table writes in this block go to ``partition`` (of the changelog and of the
    RocksDB store), as they would inside the stream event of a record of ``partition``."""
    message = Message(topic, partition, -1, 0.0, 0, [], None, None, None,
                      tp=TP(topic, partition))
    event = Event(app, None, None, {}, message)
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
        del event


def from_position(records: list[ConsumerRecord], position: int) -> list[ConsumerRecord]:
    """The fetched records (in offset order) at or after ``position``, without a Python step
    per record: usually all of them, after a seek back some are older."""
    if not records or records[0].offset >= position:
        return records
    return records[bisect.bisect_left(records, position, key=lambda r: r.offset):]


class PartitionReader:
    """A manually assigned consumer (no group of its own) over one topic."""

    def __init__(self, bootstrap: str, topic: str, limits: BatchLimits, handle: BatchHandler,
                 report_group: str | None = None,
                 gate: Callable[[], Awaitable[None]] | None = None):
        self.topic = topic
        #: awaited before each fetch: returns when reading may go on (the buffered-bytes cap)
        self.gate = gate
        #: a consumer group that only *shows* the positions (Kafka lag tools, the explorer); no
        #: member ever joins it, and what counts is the position in the buffers table
        self.report_group = report_group
        self._reported = 0.0
        self._last_report: dict[int, int] = {}
        self.limits = limits
        self.handle = handle
        self.bootstrap = bootstrap
        self.consumer: AIOKafkaConsumer | None = None  # made in the worker's event loop
        self.partitions: dict[int, int] = {}  # partition -> next offset to hand over
        self._lock = asyncio.Lock()
        self._assigned = asyncio.Event()
        self._started = False
        self.handled_records = 0

    async def _start(self) -> None:
        if not self._started:
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.report_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest", max_partition_fetch_bytes=self.limits.max_bytes,
                fetch_max_bytes=self.limits.max_bytes,
                # how long the broker may hold a fetch while the partitions have nothing new:
                # it answers as soon as a record arrives, so this costs no latency, and a long
                # hold spares the broker 50 empty fetches/s per worker (the wait for getmany's
                # batch is ``max_wait_ms``, below)
                fetch_max_wait_ms=IDLE_FETCH_WAIT_MS)
            await self.consumer.start()
            self._started = True

    async def take(self, starts: dict[int, int | None]) -> None:
        """Read these partitions from now on, each from its start (None: the log's start)."""
        async with self._lock:
            await self._start()
            tps = [TopicPartition(self.topic, p) for p in sorted(starts)]
            self.consumer.assign(tps)
            begin = await self.consumer.beginning_offsets(tps) if tps else {}
            self.partitions = {}
            for tp in tps:
                start = starts[tp.partition]
                start = begin[tp] if start is None else max(start, begin[tp])
                self.consumer.seek(tp, start)
                self.partitions[tp.partition] = start
            if tps:
                log.info("%s: reading partitions %s from %s", self.topic,
                         sorted(self.partitions), self.partitions)
                self._assigned.set()

    async def release(self) -> None:
        """Stop reading (a rebalance); returns once no batch is being handled."""
        async with self._lock:
            self._assigned.clear()
            self.partitions = {}
            if self._started:
                self.consumer.assign([])

    async def run(self) -> None:
        """Hand batches to the handler until cancelled."""
        delay = 0.2
        while True:
            await self._assigned.wait()
            if self.gate is not None:
                await self.gate()  # outside the lock: a rebalance must not wait for persisting
            async with self._lock:
                if not self.partitions:
                    self._assigned.clear()
                    continue
                try:
                    fetched = await self.consumer.getmany(
                        timeout_ms=self.limits.max_wait_ms, max_records=self.limits.max_records)
                    batch = {}
                    for tp in sorted(fetched, key=lambda t: t.partition):
                        records = from_position(fetched[tp],
                                                self.partitions.get(tp.partition, 1 << 62))
                        if records:
                            batch[tp.partition] = records
                    if batch:
                        # all partitions' records in one handling: the fixed costs of a batch
                        # (parse set-up, catalog check, snapshot write) once per fetch
                        await self.handle(batch)
                        for partition, records in batch.items():
                            self.partitions[partition] = records[-1].offset + 1
                            self.handled_records += len(records)
                    delay = 0.2
                    await self._report_positions()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # nothing of a failed batch counts as handled: read it again from the
                    # position after a pause (the handler is idempotent per offset)
                    log.exception("%s: batch failed; reading it again in %.1fs", self.topic, delay)
                    for p, offset in self.partitions.items():
                        self.consumer.seek(TopicPartition(self.topic, p), offset)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _report_positions(self, every_s: float = 1.0) -> None:
        """Commit the positions to the report group, at most every ``every_s`` (best effort)."""
        if (self.report_group is None or time.monotonic() - self._reported < every_s
                or self.partitions == self._last_report):
            return
        self._reported = time.monotonic()
        try:
            await self.consumer.commit({TopicPartition(self.topic, p): offset
                                        for p, offset in self.partitions.items()})
            self._last_report = dict(self.partitions)
        except Exception as exc:  # only a display: the next report tries again
            log.debug("%s: cannot report positions (%s)", self.topic, exc)

    def lag(self) -> dict[int, int]:
        """Records behind the partition's end, as last fetched (no request)."""
        out = {}
        if self.consumer is None:
            return out
        for p, offset in self.partitions.items():
            high = self.consumer.highwater(TopicPartition(self.topic, p))
            if high is not None:
                out[p] = max(0, high - offset)
        return out

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.consumer.stop()
