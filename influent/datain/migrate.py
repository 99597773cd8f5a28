"""``influent migrate influxdb1``: copy a database of a running InfluxDB 1.x into influent.

Per measurement: field types from ``SHOW FIELD KEYS``, then time windows read chunked and
rendered to line protocol, sent through ``influent.writes`` in large batches. After each
batch Kafka acknowledged, the windows it completed are checkpointed (Redis, see
:mod:`influent.datain.checkpoints`); a new run skips them. The fault point
``INFLUENT_FAILPOINT=migrate_half_way`` kills the process once half of the windows are sent,
before they are checkpointed (the resume test).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from influent.config import Settings
from influent.datain.checkpoints import Checkpoints, window_field
from influent.datain.influxdb1 import InfluxDB1Source, Measurement, Window, windows
from influent.datain.naming import policy_database
from influent.datain.sink import WritesSink
from influent.failpoints import failpoint


@dataclass(frozen=True)
class MigrationPlan:
    url: str
    db: str
    rp: str | None
    target_db: str
    measurements: tuple[str, ...] = ()   # empty: all
    start: int | None = None
    end: int | None = None
    window_ns: int = 3600 * 10**9
    batch_bytes: int = 4 * 1024 * 1024
    username: str | None = None
    password: str | None = None

    @property
    def job(self) -> str:
        """The checkpoint name: the same source, database, policy and target resume together."""
        where = urlsplit(self.url).netloc or self.url
        return f"influxdb1:{where}/{self.db}/{self.rp or ''}->{self.target_db}"


@dataclass
class Progress:
    """What the progress bar shows: windows done of all, rows copied, rate."""

    windows_total: int = 0
    windows_done: int = 0
    rows: int = 0          # all copied rows, earlier runs' included
    rows_this_run: int = 0
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.rows:,} rows, {self.rows_this_run / elapsed:,.0f} rows/s"


def target_database(db: str, rp: str | None, default_rp: str | None) -> str:
    return policy_database(db, rp, rp == default_rp)


async def _iterate_in_thread(items: Iterator) -> Iterator:
    """Next items of a blocking iterator, fetched in a thread (the producer keeps running)."""
    sentinel = object()
    while True:
        item = await asyncio.to_thread(next, items, sentinel)
        if item is sentinel:
            return
        yield item


async def migrate(settings: Settings, plan: MigrationPlan, source: InfluxDB1Source,
                  on_progress: Callable[[Progress], None], restart: bool = False
                  ) -> dict[tuple[str, str], int]:
    """Copy every planned window not yet checkpointed; return rows per (target db, measurement),
    counting windows copied by earlier runs too."""
    names = list(plan.measurements) or await asyncio.to_thread(source.measurements)
    work: list[tuple[Measurement, Window, Window]] = []  # (measurement, key window, query window)
    for name in names:
        m = await asyncio.to_thread(source.measurement, name)
        bounds = await asyncio.to_thread(source.time_bounds, name, plan.start, plan.end)
        if bounds is None:
            continue
        for w in windows(bounds[0], bounds[1], plan.window_ns):
            query = Window(max(w.start, plan.start if plan.start is not None else w.start),
                           min(w.end, plan.end if plan.end is not None else w.end))
            work.append((m, w, query))

    checkpoints = Checkpoints(settings.redis_url, settings.app_id, plan.job)
    sink = WritesSink(settings, plan.batch_bytes)
    counts: dict[tuple[str, str], int] = {(plan.target_db, m.name): 0 for m, _, _ in work}
    progress = Progress(windows_total=len(work))
    try:
        if restart:
            await checkpoints.clear()
        done = await checkpoints.done()
        await sink.start()
        unconfirmed: dict[str, int] = {}  # windows sent, not yet acknowledged by Kafka
        sent_windows = 0

        async def confirm() -> None:
            await sink.flush()
            if sent_windows * 2 >= len(work):
                failpoint("migrate_half_way")  # sent but not checkpointed: the resume test
            await checkpoints.mark(unconfirmed)
            unconfirmed.clear()

        for m, key_window, query in work:
            key = window_field(m.name, key_window.start, key_window.end)
            if key in done:
                counts[(plan.target_db, m.name)] += done[key]
                progress.windows_done += 1
                progress.rows += done[key]
                on_progress(progress)
                continue
            rows = 0
            async for n, lines in _iterate_in_thread(source.read_window(m, query)):
                await sink.write(plan.target_db, lines)
                rows += n
                progress.rows += n
                progress.rows_this_run += n
            counts[(plan.target_db, m.name)] += rows
            unconfirmed[key] = rows
            sent_windows += 1
            if sink.in_flight or len(unconfirmed) >= 64:  # a batch went out: confirm its windows
                await confirm()
            progress.windows_done += 1
            on_progress(progress)
        await confirm()
    finally:
        await sink.stop()
        await checkpoints.close()
    return counts
