"""Trigger runners in the worker: on-write (``table:``/``all_tables``), on-persist
(``persist:``) and scheduled (``every:``/``cron:``) triggers. Request triggers run in the query
API (query_api/routes/engine.py).

Isolation: each trigger is its own asyncio task; on-write and on-persist triggers each have
their own consumer group on ``influent.accepted`` / ``influent.persisted``
(:mod:`agents.group_consumer`), and plugin code runs in threads with a time limit
(:mod:`processing_engine.plugins`). A slow or crashing plugin delays only its own trigger; the Faust
agents (ingest, persist) never wait for it.

- On-write: the accepted batches of the trigger's database (and table) fetched together are
  one ``process_writes`` call, tables merged in ``table_batches``. Batches written by the
  trigger itself (header ``origin``) are skipped unless ``fire_on_own_writes`` is set.
- On-persist: one ``process_persist`` call per persist event of the database (and table).
- Scheduled: every worker computes the same instants; the first to claim an instant in Redis
  (``SET NX``) runs it, so a call happens once however many workers run. Instants missed while
  no worker ran are skipped. ``run_async`` lets a call start while the previous one runs.

``error_behavior``: ``log`` moves on, ``disable`` disables the trigger, ``retry`` calls again
with exponential backoff (on-write/on-persist: until it succeeds; scheduled: until the next
instant is due).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import faust
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from influent.model import MAX_MESSAGE_BYTES
from processing_engine.rows import table_batches
from processing_engine.runtime import ORIGIN_HEADER, PluginRuntime, http_query, origin_of
from processing_engine.specs import ACCEPTED, CLOCK, PERSISTED, SpecError, TriggerSpec, parse_spec
from agents.group_consumer import Backoff, GroupConsumer, GroupSpec
from agents.supervisor import Supervisor, Unit
from influent.config import Settings
from persist.engine_catalog import SEP, EngineCatalog, PluginStore, Trigger
from topics.wire import decode_batches, header_dict

log = logging.getLogger("influent.triggers")

MAX_ASYNC_CALLS = 8


def trigger_group(settings: Settings, trigger: Trigger) -> GroupSpec:
    topic = settings.persisted_topic if parse_spec(trigger.specification).source == PERSISTED \
        else settings.accepted_topic
    return GroupSpec(group_id=f"{settings.app_id}.trigger.{trigger.database}.{trigger.name}",
                     topic=topic, start_ms=trigger.start_ms,
                     lag_prefix=SEP.join(("trigger", trigger.database, trigger.name, "")))


def write_batches(trigger: Trigger, spec: TriggerSpec, records: list[ConsumerRecord]
                  ) -> list[dict]:
    """``table_batches`` of the records this on-write trigger sees (pure)."""
    own = origin_of(trigger)
    picked = []
    for record in records:
        headers = header_dict(record.headers)
        if headers.get("database") != trigger.database or not spec.wants_table(headers.get("table", "")):
            continue
        if headers.get(ORIGIN_HEADER) == own and not trigger.settings.fire_on_own_writes:
            continue
        picked.append((headers["table"], decode_batches(record.value)))
    return table_batches(picked)


def persist_events(trigger: Trigger, spec: TriggerSpec, records: list[ConsumerRecord]) -> list[dict]:
    """The persist events (as dicts) this on-persist trigger sees (pure)."""
    events = [orjson.loads(r.value) for r in records]
    return [e for e in events if e.get("database") == trigger.database and spec.wants_table(e.get("table", ""))
            and e.get("kind", "persisted") == "persisted"]  # not compaction's events


class TriggerRunners:
    def __init__(self, settings: Settings, runtime: PluginRuntime, catalog: EngineCatalog):
        self.settings = settings
        self.runtime = runtime
        self.catalog = catalog

    async def on_writes(self, trigger: Trigger, spec: TriggerSpec) -> None:
        args = trigger.arguments

        async def handle(records: list[ConsumerRecord]) -> bool:
            batches = write_batches(trigger, spec, records)
            if not batches:
                return True
            outcome = await self.runtime.call(trigger, spec.function, lambda api: (api, batches, args))
            return await self.runtime.settle(trigger, outcome)

        await GroupConsumer(self.settings.kafka_bootstrap, trigger_group(self.settings, trigger),
                            self.catalog).run(handle)

    async def on_persist(self, trigger: Trigger, spec: TriggerSpec) -> None:
        args = trigger.arguments

        async def handle(records: list[ConsumerRecord]) -> bool:
            for event in persist_events(trigger, spec, records):
                outcome = await self.runtime.call(trigger, spec.function, lambda api, e=event: (api, e, args))
                if not await self.runtime.settle(trigger, outcome):
                    return False
            return True

        await GroupConsumer(self.settings.kafka_bootstrap, trigger_group(self.settings, trigger),
                            self.catalog).run(handle)

    async def scheduled_call(self, trigger: Trigger, spec: TriggerSpec, instant: datetime,
                             deadline: datetime | None) -> None:
        call_time = datetime.fromtimestamp(instant.timestamp())  # naive local time, as InfluxDB 3
        backoff = Backoff()
        while True:
            outcome = await self.runtime.call(trigger, spec.function,
                                              lambda api: (api, call_time, trigger.arguments))
            if await self.runtime.settle(trigger, outcome):
                return
            delay = backoff.next()
            if deadline and datetime.now(timezone.utc).timestamp() + delay >= deadline.timestamp():
                return
            await asyncio.sleep(delay)

    async def on_schedule(self, trigger: Trigger, spec: TriggerSpec) -> None:
        running: set[asyncio.Task] = set()
        try:
            instant = spec.next_fire(datetime.now(timezone.utc))
            while instant is not None:
                await asyncio.sleep(max(0.0, instant.timestamp() - datetime.now(timezone.utc).timestamp()))
                following = spec.next_fire(instant)
                hold = int(max(60, (following.timestamp() - instant.timestamp()) * 2)) if following else 86_400
                if await self.catalog.claim_instant(trigger.database, trigger.name,
                                                    int(instant.timestamp()),
                                                    self.settings.worker_id, hold):
                    call = self.scheduled_call(trigger, spec, instant, following)
                    if trigger.settings.run_async and len(running) < MAX_ASYNC_CALLS:
                        task = asyncio.create_task(call)
                        running.add(task)
                        task.add_done_callback(running.discard)
                    else:
                        await call
                instant = spec.next_fire(max(instant, datetime.now(timezone.utc)))
        finally:
            for task in list(running):
                task.cancel()

    def unit(self, trigger: Trigger) -> Unit | None:
        try:
            spec = parse_spec(trigger.specification)
        except SpecError:
            log.warning("trigger %s/%s: invalid specification %r", trigger.database, trigger.name,
                        trigger.specification)
            return None
        run = {ACCEPTED: self.on_writes, PERSISTED: self.on_persist, CLOCK: self.on_schedule}.get(spec.source)
        return (lambda: run(trigger, spec)) if run else None


async def run_triggers(settings: Settings) -> None:
    """Run every enabled worker-side trigger of the catalog until cancelled."""
    catalog = EngineCatalog.connect(settings.redis_url, settings.app_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, max_request_size=MAX_MESSAGE_BYTES)
    backoff = Backoff(cap=10.0)
    while True:
        try:
            await producer.start()
            break
        except KafkaError:
            await asyncio.sleep(backoff.next())
    http = httpx.AsyncClient(timeout=60)
    runtime = PluginRuntime(settings, producer, catalog, PluginStore(settings.redis_url, settings.app_id),
                            http_query(settings, http))
    runners = TriggerRunners(settings, runtime, catalog)

    async def wanted() -> dict[str, Unit]:
        units: dict[str, Unit] = {}
        for trigger in await catalog.triggers():
            unit = None if trigger.disabled else runners.unit(trigger)
            if unit is not None:
                units[f"{trigger.database}/{trigger.name}@{hash(trigger.to_json()):x}"] = unit
        return units

    try:
        await Supervisor("trigger", catalog, wanted).run()
    finally:
        runtime.close()
        await http.aclose()
        await producer.stop()
        await catalog.close()


def register_triggers(app: faust.App, settings: Settings) -> None:
    """Start the worker's trigger runners with the worker (after its tables are recovered)."""

    @app.task
    async def triggers() -> None:
        await run_triggers(settings)
