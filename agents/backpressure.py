"""How many bytes this worker has buffered and not yet persisted, and the ingest pause above a cap.

Ingest reads as fast as Kafka delivers; without a bound, a rate above what persisting keeps up
with would grow the buffers table (and the Redis snapshots, and the query API's cache) without
end. The ingestor adds the bytes of every entry it buffers, the persist agent takes away what
it persists or purges; above ``INFLUENT_INGEST_MAX_BUFFERED_BYTES`` the reader stops fetching
(the lag grows in Kafka, where it costs nothing) and the persist agent persists the partitions'
buffers without waiting for their thresholds, until the total is back below the cap. Both sides
rebuild the figure from the recovered buffers table after a rebalance.
"""
from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("influent.ingest")


class BufferedBytes:
    """Per source partition: bytes buffered and not persisted; a gate for the reader."""

    def __init__(self, cap: int):
        self.cap = cap
        self.by_partition: dict[int, int] = {}
        self._below = asyncio.Event()
        self._below.set()
        self.pauses = 0  # times ingest had to wait (for the log and the benchmarks)
        self.paused_s = 0.0

    @property
    def total(self) -> int:
        return sum(self.by_partition.values())

    @property
    def over_cap(self) -> bool:
        return self.cap > 0 and self.total > self.cap

    def _changed(self) -> None:
        if self.over_cap:
            self._below.clear()
        else:
            self._below.set()

    def add(self, partition: int, size: int) -> None:
        self.by_partition[partition] = self.by_partition.get(partition, 0) + size
        self._changed()

    def remove(self, partition: int, size: int) -> None:
        self.by_partition[partition] = max(0, self.by_partition.get(partition, 0) - size)
        self._changed()

    def reset(self, sizes: dict[int, int]) -> None:
        """The figure as the recovered buffers table has it (after a rebalance)."""
        self.by_partition = dict(sizes)
        self._changed()

    async def wait_below(self) -> None:
        """Return at once under the cap; else log, wait until persisting brings it down."""
        if self._below.is_set():
            return
        self.pauses += 1
        started = time.monotonic()
        log.info("ingest paused: %d bytes buffered and not yet persisted (cap %d)",
                 self.total, self.cap)
        await self._below.wait()
        self.paused_s += time.monotonic() - started
        log.info("ingest resumed after %.1f s: %d bytes buffered (cap %d)",
                 time.monotonic() - started, self.total, self.cap)
