"""Continuous queries in the worker: the processing engine's scheduler runs them.

Each stored continuous query (persist/continuous_queries.py) is one supervised unit, as
scheduled triggers are: every worker computes the same instants (multiples of the query's
EVERY since the epoch); the first to claim an instant in Redis runs it, so each run happens
once however many workers there are. A run sends one ``SELECT ... INTO`` over the run's time
range (persist/continuous_queries.py) to the query API, whose points go through the writes
topic like any other write; re-running a window overwrites its points (same series and time),
so late data is folded in by the next runs that still cover its window.
"""
from __future__ import annotations

import asyncio
import logging
import time

import faust
import httpx

from agents.group_consumer import Backoff
from agents.supervisor import Supervisor, Unit
from influent.config import Settings
from persist.continuous_queries import ContinuousQuery, ContinuousQueryStore, run_statement_text
from persist.engine_catalog import EngineCatalog

log = logging.getLogger("influent.continuous_queries")

CLAIM_PREFIX = "cq:"  # claimed instants share the scheduled triggers' keys, prefixed


def next_instant(cq: ContinuousQuery, now_ns: int) -> int:
    """The first run instant strictly after ``now_ns`` (multiples of EVERY)."""
    return (now_ns // cq.every_ns + 1) * cq.every_ns


async def run_once(cq: ContinuousQuery, instant_ns: int, settings: Settings,
                   http: httpx.AsyncClient) -> str | None:
    """One run through the query API; the error it reports, or None."""
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        resp = await http.post(f"{settings.http_url}/query",
                               data={"db": cq.database, "q": run_statement_text(cq, instant_ns)},
                               headers=headers)
    except httpx.HTTPError as exc:
        return f"query API unreachable at {settings.http_url}: {exc}"
    if resp.status_code != 200:
        return f"query failed ({resp.status_code}): {resp.text.strip()}"
    body = resp.json()
    errors = [r["error"] for r in body.get("results", []) if "error" in r]
    return body.get("error") or (errors[0] if errors else None)


async def schedule(cq: ContinuousQuery, settings: Settings, catalog: EngineCatalog,
                   http: httpx.AsyncClient) -> None:
    """Run ``cq`` at each of its instants until cancelled."""
    hold = int(max(60, 2 * cq.every_ns // 1_000_000_000))
    while True:
        instant = next_instant(cq, time.time_ns())
        await asyncio.sleep(max(0.0, (instant - time.time_ns()) / 1e9))
        if not await catalog.claim_instant(cq.database, CLAIM_PREFIX + cq.name,
                                           instant // 1_000_000_000, settings.worker_id, hold):
            continue
        backoff = Backoff()
        while True:
            error = await run_once(cq, instant, settings, http)
            if error is None:
                break
            log.warning("continuous query %s/%s at %d: %s", cq.database, cq.name, instant, error)
            delay = backoff.next()
            if time.time_ns() + delay * 1e9 >= instant + cq.every_ns:
                break  # the next run covers it
            await asyncio.sleep(delay)


async def run_continuous_queries(settings: Settings) -> None:
    """Run every stored continuous query until cancelled, following catalog changes."""
    catalog = EngineCatalog.connect(settings.redis_url, settings.app_id)
    store = ContinuousQueryStore.connect(settings.redis_url, settings.app_id)
    http = httpx.AsyncClient(timeout=120)

    async def wanted() -> dict[str, Unit]:
        units: dict[str, Unit] = {}
        for cq in await store.all():
            key = f"{cq.database}/{cq.name}@{hash(cq.to_json()):x}"
            units[key] = (lambda cq=cq: schedule(cq, settings, catalog, http))
        return units

    try:
        await Supervisor("continuous query", catalog, wanted).run()
    finally:
        await http.aclose()
        await store.close()
        await catalog.close()


def register_continuous_queries(app: faust.App, settings: Settings) -> None:
    """Start the worker's continuous query scheduler with the worker."""

    @app.task
    async def continuous_queries() -> None:
        await run_continuous_queries(settings)
