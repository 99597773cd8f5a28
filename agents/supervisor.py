"""Keep one asyncio task per wanted unit of work (a subscription destination, a trigger), in
step with the catalog, so running workers pick up changes without a restart.

The catalog's ``engine_version`` counter is polled every ``POLL_INTERVAL`` seconds; when it
moves (or every ``REFRESH_INTERVAL`` seconds anyway) the wanted set is recomputed: new units
start, units no longer wanted (or changed: the key includes a fingerprint) are cancelled. A
unit that crashes is logged and restarted after a backoff — one unit's failure never touches
the others.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from persist.engine_catalog import EngineCatalog

log = logging.getLogger("influent.reactors")

POLL_INTERVAL = 1.0
REFRESH_INTERVAL = 30.0
RESTART_DELAY = 5.0

Unit = Callable[[], Awaitable[None]]


class Supervisor:
    def __init__(self, name: str, catalog: EngineCatalog,
                 wanted: Callable[[], Awaitable[dict[str, Unit]]]):
        self.name = name
        self.catalog = catalog
        self.wanted = wanted
        self.tasks: dict[str, asyncio.Task] = {}

    async def _guard(self, key: str, unit: Unit) -> None:
        while True:
            try:
                await unit()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s %s failed; restarting in %.0fs", self.name, key, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    async def sync(self) -> None:
        wanted = await self.wanted()
        for key in [k for k in self.tasks if k not in wanted or self.tasks[k].done()]:
            task = self.tasks.pop(key)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("%s stopped: %s", self.name, key)
        for key, unit in wanted.items():
            if key not in self.tasks:
                self.tasks[key] = asyncio.create_task(self._guard(key, unit), name=f"{self.name}:{key}")
                log.info("%s started: %s", self.name, key)

    async def run(self) -> None:
        """Follow the catalog until cancelled; then stop every unit."""
        seen, refreshed = None, 0.0
        try:
            while True:
                try:
                    version = await self.catalog.version()
                    if version != seen or time.monotonic() - refreshed > REFRESH_INTERVAL:
                        await self.sync()
                        seen, refreshed = version, time.monotonic()
                except asyncio.CancelledError:
                    raise
                except Exception:  # Redis away: keep what runs, look again later
                    log.warning("%s: cannot read the catalog", self.name, exc_info=True)
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            tasks = list(self.tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.tasks.clear()
