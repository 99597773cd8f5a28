"""The plugin runtime of one process (a worker, or the query API for request triggers): runs
one plugin call with its ``influxdb3_local``, produces what it wrote, logs and counts failures,
and applies the trigger's ``error_behavior``.

Writes made by a trigger carry the Kafka header ``origin: trigger:<db>/<name>``; the ingest
agent copies it onto the accepted batches, so the trigger can skip its own writes.
"""
from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaProducer

from processing_engine.local_api import CallContext, PluginApi, QueryError
from processing_engine.plugins import PluginLoader, call_in_thread
from processing_engine.rows import query_rows
from processing_engine.uploaded import UploadedPlugins
from influent.config import Settings
from persist.admission import WriteRequest, admit
from persist.catalog import Catalog
from persist.engine_catalog import EngineCatalog, PluginStore, Trigger
from topics.line_protocol import LineError
from topics.wire import RejectedLine, now

log = logging.getLogger("influent.plugins")

ORIGIN_HEADER = "origin"
#: Longest a plugin thread waits for a synchronous write or a query to complete.
SYNC_TIMEOUT = 120.0

#: (database, sql, params) -> result table, run on the event loop.
QueryTable = Callable[[str, str, "dict[str, Any] | None"], Awaitable[pa.Table]]


class WriteRefused(ValueError):
    """A plugin's write was refused: an invalid database name, or rejected lines."""


def rejected_text(rejected: list[LineError]) -> str:
    return "; ".join(f"line {e.line} rejected: {e.reason}" for e in rejected)


def origin_of(trigger: Trigger) -> str:
    return f"trigger:{trigger.database}/{trigger.name}"


@dataclass(frozen=True)
class CallOutcome:
    ok: bool
    result: Any = None
    error: str | None = None
    skipped: bool = False  # the trigger was disabled or deleted meanwhile: nothing was called


def http_query(settings: Settings, client: httpx.AsyncClient) -> QueryTable:
    """Queries through the query API (for processes without a query engine: workers); asks
    for Parquet so types (int ns timestamps, uint64, ...) survive the trip."""
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}

    async def run(db: str, sql: str, params: dict[str, Any] | None) -> pa.Table:
        body = {"db": db, "q": sql, "format": "parquet", **({"params": params} if params else {})}
        try:
            resp = await client.post(f"{settings.http_url}/api/v3/query_sql", json=body,
                                     headers=headers)
        except httpx.HTTPError as exc:
            raise QueryError(f"query API unreachable at {settings.http_url}: {exc}") from exc
        if resp.status_code != 200:
            raise QueryError(f"query failed ({resp.status_code}): {resp.text.strip()}")
        if not resp.content:
            return pa.table({})
        return pq.read_table(pa.BufferReader(resp.content))

    return run


class PluginRuntime:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer, catalog: EngineCatalog,
                 store: PluginStore, query_table: QueryTable):
        self.settings = settings
        self.producer = producer
        self.catalog = catalog
        self.store = store
        self.query_table = query_table
        self.loader = PluginLoader(settings.plugins_path, UploadedPlugins(
            store.redis, settings.app_id, Path(settings.state_dir) / "uploaded_plugins"))

    async def produce(self, db: str, lines: list[str], origin: str) -> list[LineError]:
        """Admit the lines as any write is admitted (persist/admission.py), send the accepted
        ones to the writes topic (acks=all) as one message tagged with their origin, and the
        rejected ones to the rejected topic. Returns the rejected lines; WriteRefused when the
        whole write is (an invalid database name)."""
        if not lines:
            return []
        request = WriteRequest(body="\n".join(lines).encode(), database=db, precision="ns",
                               default_time_ns=time.time_ns(),
                               max_body_bytes=max(self.settings.max_body_bytes,
                                                  sum(len(line) + 1 for line in lines)))
        [admission] = await admit([request], Catalog(self.catalog.redis, self.settings.app_id))
        if admission.refusal is not None:
            raise WriteRefused(admission.refusal.reason)
        for err in admission.rejected:
            record = RejectedLine(db, err.line, err.original, err.reason, origin, -1, -1, now())
            await self.producer.send(self.settings.rejected_topic, record.to_json(),
                                     key=db.encode())
        if admission.tables:
            headers = [("db", db.encode()), ("precision", b"ns"), ("content-type", b"text/plain"),
                       (ORIGIN_HEADER, origin.encode())]
            await self.producer.send_and_wait(self.settings.writes_topic,
                                              admission.accepted_body(), headers=headers)
        elif admission.rejected:
            await self.producer.flush()
        return admission.rejected

    def _context(self, trigger: Trigger, loop: asyncio.AbstractEventLoop) -> CallContext:
        origin = origin_of(trigger)

        def write_now(db: str, lines: list[str]) -> None:
            rejected = asyncio.run_coroutine_threadsafe(
                self.produce(db, lines, origin), loop).result(SYNC_TIMEOUT)
            if rejected:  # write_sync reports a bad line to the plugin, as InfluxDB 3 does
                raise WriteRefused(rejected_text(rejected))

        def query(db: str, sql: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
            future = asyncio.run_coroutine_threadsafe(self.query_table(db, sql, params), loop)
            try:
                return query_rows(future.result(SYNC_TIMEOUT))
            except QueryError:
                raise
            except Exception as exc:  # the engine's own errors, as the plugin API's
                raise QueryError(str(exc)) from exc

        return CallContext(trigger.database, trigger.name, self.store, write_now, query)

    async def call(self, trigger: Trigger, function: str,
                   make_args: Callable[[PluginApi], tuple]) -> CallOutcome:
        """Call ``function`` of the trigger's plugin with ``make_args(influxdb3_local)``, then
        produce its buffered writes. Failures (raised, timed out, unwritable) are logged to
        ``system.processing_engine_logs`` and counted; they never raise here.

        The catalog is read first: a trigger disabled (e.g. by ``error_behavior=disable``) or
        deleted since its runner started is not called again, whichever process disabled it."""
        db, name = trigger.database, trigger.name
        current = await self.catalog.trigger(db, name)
        if current is None or current.disabled or current.start_ms != trigger.start_ms:
            return CallOutcome(True, skipped=True)
        api = PluginApi(self._context(trigger, asyncio.get_running_loop()))

        def run() -> Any:
            fn = self.loader.function(f"{db}/{name}", trigger.plugin_filename, function)
            return fn(*make_args(api))

        await self.catalog.incr("calls", db, name)
        try:
            result = await call_in_thread(run, trigger.settings.timeout_seconds)
            by_db: dict[str, list[str]] = {}
            for target, line in api.buffered:
                by_db.setdefault(target, []).append(line)
            for target, lines in by_db.items():
                rejected = await self.produce(target, lines, origin_of(trigger))
                if rejected:  # the call succeeded; its bad lines are reported in its log
                    await asyncio.to_thread(self.store.log, db, name, "ERROR",
                                            f"write to {target}: {rejected_text(rejected)}")
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything
            message = f"error executing plugin {trigger.plugin_filename} ({function}): " \
                      f"{type(exc).__name__}: {exc}"
            log.warning("[%s/%s] %s\n%s", db, name, message,
                        "".join(traceback.format_exception(exc)[-6:]))
            await self.catalog.incr("errors", db, name)
            await asyncio.to_thread(self.store.log, db, name, "ERROR", message)
            return CallOutcome(False, error=message)
        return CallOutcome(True, result)

    async def settle(self, trigger: Trigger, outcome: CallOutcome) -> bool:
        """Apply ``error_behavior`` to a call's outcome: True when the event is done with
        (success, ``log``, or ``disable`` — which disables the trigger everywhere), False when
        it must be called again (``retry``)."""
        if outcome.ok:
            return True
        behavior = trigger.settings.error_behavior
        if behavior == "retry":
            return False
        if behavior == "disable":
            await self.catalog.set_trigger_disabled(trigger.database, trigger.name, True)
            await asyncio.to_thread(self.store.log, trigger.database, trigger.name, "WARN",
                                    "trigger disabled after an error (error_behavior=disable)")
        return True

    def close(self) -> None:
        self.store.close()
