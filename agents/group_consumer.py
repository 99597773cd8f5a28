"""A plain aiokafka consumer in its own consumer group, for work that reacts to pipeline topics
(subscription delivery, on-write and on-persist triggers) without slowing the Faust agents.

Each subscription destination and each trigger has its own group, so each keeps its own
offsets and lag: a slow or failing one falls behind alone. Delivery is at least once: a batch's
offsets are committed only after the handler says it is done; when it says "not yet", the
consumer seeks back to the batch's start and tries again after an exponential backoff, calling
``getmany`` between attempts so it stays in the group however long a destination is away.

A group starts at ``start_ms`` (the creation or enabling time of what it serves): on each
assignment a partition resumes from the later of its committed offset and the first offset at
or after ``start_ms``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from influent.model import KEY_SEPARATOR, MAX_FETCH_BYTES, MAX_MESSAGE_BYTES
from persist.engine_catalog import EngineCatalog

log = logging.getLogger("influent.reactors")

#: Handler of a fetched batch (records in offset order per partition): True when done.
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[bool]]

LAG_REPORT_INTERVAL = 2.0


@dataclass(frozen=True)
class GroupSpec:
    group_id: str
    topic: str
    start_ms: int
    lag_prefix: str  # lag field prefix "<kind>␟<db>␟<name>␟<destination>"; + "␟<partition>"


class Backoff:
    """Exponential backoff: 0.2 s doubling up to ``cap`` seconds."""

    def __init__(self, first: float = 0.2, cap: float = 30.0):
        self.first, self.cap, self.current = first, cap, 0.0

    def next(self) -> float:
        self.current = self.first if not self.current else min(self.current * 2, self.cap)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class _StartAt(ConsumerRebalanceListener):
    def __init__(self, runner: "GroupConsumer"):
        self.runner = runner

    async def on_partitions_revoked(self, revoked) -> None:
        await self.runner.forget(list(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self.runner.position(list(assigned))


class GroupConsumer:
    def __init__(self, bootstrap: str, spec: GroupSpec, catalog: EngineCatalog,
                 max_records: int = 500):
        self.spec = spec
        self.catalog = catalog
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=spec.group_id, enable_auto_commit=False,
            auto_offset_reset="latest", session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
            max_poll_interval_ms=3_600_000, max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=MAX_FETCH_BYTES)
        self.max_records = max_records
        self.committed: dict[TopicPartition, int] = {}
        self._last_lag_report = 0.0

    async def position(self, assigned: list[TopicPartition]) -> None:
        """Seek each newly assigned partition to max(committed, first offset >= start_ms)."""
        if not assigned:
            return
        by_time = await self.consumer.offsets_for_times({tp: self.spec.start_ms for tp in assigned})
        ends = await self.consumer.end_offsets(assigned)
        for tp in assigned:
            found = by_time.get(tp)
            start = found.offset if found is not None else ends[tp]
            committed = await self.consumer.committed(tp)
            target = max(start, committed or 0)
            self.consumer.seek(tp, target)
            self.committed[tp] = target

    async def forget(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.committed.pop(tp, None)
        await self.catalog.drop_lag([self._lag_field(tp) for tp in revoked])

    def _lag_field(self, tp: TopicPartition) -> str:
        return f"{self.spec.lag_prefix}{KEY_SEPARATOR}{tp.partition}"

    async def _report_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag_report < LAG_REPORT_INTERVAL:
            return
        self._last_lag_report = now
        entries = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None and tp in self.committed:
                entries[self._lag_field(tp)] = max(0, high - self.committed[tp])
        try:
            await self.catalog.report_lag(entries)
        except Exception:  # metrics must never stop delivery
            log.debug("lag report failed", exc_info=True)

    async def run(self, handler: BatchHandler) -> None:
        """Consume until cancelled."""
        self.consumer.subscribe([self.spec.topic], listener=_StartAt(self))
        await self.consumer.start()
        backoff = Backoff()
        try:
            while True:
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
                if fetched:
                    records = [r for tp in sorted(fetched, key=lambda t: t.partition)
                               for r in fetched[tp]]
                    if await handler(records):
                        await self._commit({tp: recs[-1].offset + 1 for tp, recs in fetched.items()})
                        backoff.reset()
                    else:
                        self._rewind({tp: recs[0].offset for tp, recs in fetched.items()})
                        await asyncio.sleep(backoff.next())
                await self._report_lag()
        finally:
            try:
                await self.catalog.drop_lag([self._lag_field(tp) for tp in self.consumer.assignment()])
            except Exception:
                pass
            await self.consumer.stop()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)
        except KafkaError as exc:  # a rebalance took the partition: its new owner redelivers
            log.info("%s: commit failed (%s); the batch will be delivered again", self.spec.group_id, exc)

    def _rewind(self, starts: dict[TopicPartition, int]) -> None:
        for tp, offset in starts.items():
            try:
                self.consumer.seek(tp, offset)
            except Exception:  # revoked meanwhile: its new owner starts from the commit
                pass
