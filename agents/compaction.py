"""Compaction, retention and file deletion in the worker.

A sweep runs every ``compact_interval`` seconds over every table, and early for the tables named
by persist events (a consumer group of its own on ``influent.persisted``). Per (database, table,
partition key) it plans the next step (persist/compaction.py) and runs it under a lease in Redis,
so exactly one worker compacts a partition at a time whichever workers run. Steps of one run,
each safe to SIGKILL:

1. read the inputs and build the outputs (Parquet work in a thread: ingest never waits);
2. record the outputs as *intents* in the deletion queue, then write them;
3. swap in one Redis step: inputs out, outputs in, inputs into the deletion queue (due after the
   grace period, for queries in flight), the ``compacted`` event into an outbox and the event
   stream. The swap checks the lease and that every input is still registered;
4. send the ``compacted`` event on ``influent.persisted``.

A crash before the swap leaves intents that the deletion sweep removes after the grace period;
a crash after it leaves the inputs queued; the sweep claims each due path before deleting it,
and a claimed path whose deletion died is deleted by the next sweep.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import faust
import orjson
from aiokafka.errors import KafkaError

from agents.group_consumer import GroupConsumer, GroupSpec
from influent.config import Settings
from influent.failpoints import failpoint
from persist.catalog import Catalog
from persist.compaction import Plan, build_outputs, plan_partition
from persist.engine_catalog import EngineCatalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore, open_store
from persist.parquet_files import ParquetFileMeta
from persist.soft_deletes import SoftDeletes
from persist.tombstones import purgeable
from persist.visibility import Visibility
from topics.declarations import PipelineTopics
from topics.wire import ORDER_TS, decode_batches

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger("influent.compaction")

MAX_STEPS_PER_PARTITION = 16
SEND_TIMEOUT = 30.0


class Compactor:
    def __init__(self, settings: Settings, catalog: Catalog, store: ObjectStore, send_event):
        self.settings = settings
        self.catalog = catalog
        self.lifecycle = LifecycleCatalog(catalog)
        self.store = store
        self.send_event = send_event  # async (key, payload) -> None
        self.lease_ttl = max(6.0, 2 * settings.compact_interval)  # renewed while held

    # ---- sweeps ---------------------------------------------------------------------------
    async def sweep(self, only: set[tuple[str, str]] | None = None) -> int:
        """Compact what needs it (every table, or ``only``), then delete what is due; returns
        the number of steps run."""
        steps = 0
        targets = only if only is not None else {
            (db, t) for db in await self.catalog.databases() for t in await self.catalog.tables(db)}
        for db, table in sorted(targets):
            files = await self.catalog.files(db, table)
            rules = await self.lifecycle.visibility(db, table)
            by_partition: dict[str, list[ParquetFileMeta]] = defaultdict(list)
            for f in files:
                by_partition[f.partition_key].append(f)
            for pk, group in sorted(by_partition.items()):
                if plan_partition(group, rules, self.settings.compact_min_files) is not None:
                    steps += await self.compact_partition(db, table, pk)
        await self.delete_due()
        await self.flush_outbox()
        await self.purge_tombstones()
        for record in await SoftDeletes(self.catalog, self.store).hard_delete_due():
            log.info("hard-deleted %s (soft-deleted %s as %s)",
                     record.key.replace("\x1f", "/"), record.original, record.name)
        return steps

    async def purge_tombstones(self) -> int:
        """Forget the tombstones compaction has materialised everywhere (persist/tombstones.py
        ``purgeable``); returns how many."""
        _, tombs = await self.lifecycle.tombstones()
        now_ms = int(time.time() * 1000)
        min_age_ms = int(self.settings.tombstone_min_age * 1000)
        done = []
        for tomb in tombs:
            if now_ms - tomb.created_ms < min_age_ms:
                continue
            tables = [tomb.table] if tomb.table else await self.catalog.tables(tomb.database)
            files, oldest = [], None
            for table in tables:
                files += await self.catalog.files(tomb.database, table)
                low = await self.oldest_buffered_ms(tomb.database, table)
                if low is not None:
                    oldest = low if oldest is None else min(oldest, low)
            if purgeable(tomb, files, oldest, now_ms, min_age_ms):
                done.append(tomb.id)
        if done:
            await self.lifecycle.purge_tombstones(done, self.store)
            log.info("purged %d tombstone(s) applied to every file: %s", len(done), done)
        return len(done)

    async def oldest_buffered_ms(self, db: str, table: str) -> int | None:
        """The oldest write time (Kafka timestamp) of a table's buffered rows, from its buffer
        snapshots; None when nothing is buffered."""
        oldest = None
        for raw in await self.catalog.snapshots(db, table):
            batch = decode_batches(raw)
            if batch.num_rows and ORDER_TS in batch.column_names:
                low = pc.min(batch.column(ORDER_TS)).as_py()
                oldest = low if oldest is None else min(oldest, low)
        return oldest

    async def compact_partition(self, db: str, table: str, pk: str) -> int:
        token = await self.lifecycle.acquire(db, table, pk, self.lease_ttl)
        if token is None:
            return 0  # another worker has it
        steps = 0

        async def keep() -> None:
            while await self.lifecycle.renew(db, table, pk, token, self.lease_ttl):
                await asyncio.sleep(self.lease_ttl / 3)

        keeper = asyncio.create_task(keep())
        try:
            for _ in range(MAX_STEPS_PER_PARTITION):
                seq, tombstones = await self.lifecycle.tombstones(db)
                period = await self.catalog.effective_retention(db, table)
                rules = Visibility(None if period is None else time.time_ns() - period,
                                   tuple(t for t in tombstones if t.covers(table)))
                files = [f for f in await self.catalog.files(db, table) if f.partition_key == pk]
                plan = plan_partition(files, rules, self.settings.compact_min_files)
                if plan is None:
                    break
                if not await self.run(plan, rules, seq, token):
                    break
                steps += 1
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.lifecycle.release(db, table, pk, token)
        return steps

    # ---- one step -------------------------------------------------------------------------
    async def run(self, plan: Plan, rules: Visibility, seq: int, token: str) -> bool:
        started = time.time()
        schema = await self.catalog.table_schema(plan.database, plan.table)

        def build() -> list[tuple[bytes, ParquetFileMeta]]:
            tables = [self.read(m) for m in plan.inputs] if plan.kind != "drop" else []
            return build_outputs(plan, tables, schema.tags, rules, seq, schema.columns,
                                 self.settings.compact_target_bytes, started)

        outputs = await asyncio.to_thread(build)
        grace_end = time.time() + self.settings.compact_grace
        await self.lifecycle.add_intents([m.path for _, m in outputs], grace_end)
        await asyncio.to_thread(lambda: [self.store.put(m.path, body) for body, m in outputs])
        failpoint("compact_after_outputs")
        metas = [m for _, m in outputs]
        event = self.event(plan, metas, started)
        summary = self.summary(plan, metas, started, "done")
        result = await self.lifecycle.swap(plan.database, plan.table, plan.partition_key, token,
                                           [m.path for m in plan.inputs], metas,
                                           time.time() + self.settings.compact_grace, event, summary)
        if result != 1:
            why = {0: "inputs changed meanwhile", -1: "lease lost", -2: "outputs expired"}[result]
            log.warning("compaction of %s/%s/%s abandoned: %s", plan.database, plan.table,
                        plan.partition_key, why)
            await self.lifecycle.record_event(self.summary(plan, metas, started, f"abandoned: {why}"))
            return False
        failpoint("compact_after_swap")
        log.info("compacted %s/%s/%s: %s, %d rows in %d file(s)", plan.database, plan.table,
                 plan.partition_key, plan.describe(), sum(m.rows for m in metas), len(metas))
        await self.flush_outbox()
        return True

    def read(self, meta: ParquetFileMeta) -> pa.Table:
        local = self.store.local_path(meta.path)
        return pq.read_table(local if local else pa.BufferReader(self.store.get(meta.path)))

    def event(self, plan: Plan, outputs: list[ParquetFileMeta], started: float) -> dict:
        """The ``compacted`` persist event: which files replaced which."""
        return {"kind": "compacted", "database": plan.database, "table": plan.table,
                "partition_key": plan.partition_key, "object_store": self.store.url,
                "action": plan.kind, "level": plan.level,
                "inputs": [m.path for m in plan.inputs],
                "outputs": [{"path": m.path, "url": self.store.object_url(m.path), "size": m.size,
                             "rows": m.rows, "min_time": m.min_time, "max_time": m.max_time,
                             "level": m.level} for m in outputs],
                "created_at": started}

    @staticmethod
    def summary(plan: Plan, outputs: list[ParquetFileMeta], started: float, status: str) -> dict:
        return {"time": int(started * 1e9), "database": plan.database, "table": plan.table,
                "partition_key": plan.partition_key, "action": plan.kind, "level": plan.level,
                "input_files": len(plan.inputs), "output_files": len(outputs),
                "input_bytes": sum(m.size for m in plan.inputs),
                "output_bytes": sum(m.size for m in outputs),
                "input_rows": sum(m.rows for m in plan.inputs),
                "output_rows": sum(m.rows for m in outputs),
                "duration_ms": int((time.time() - started) * 1000), "status": status}

    # ---- deletion and events --------------------------------------------------------------
    async def delete_due(self) -> int:
        paths = await self.lifecycle.due_deletions()
        for path in paths:
            failpoint("compact_before_delete")
            await asyncio.to_thread(self.store.delete, path)
            await self.lifecycle.deleted(path)
        return len(paths)

    async def flush_outbox(self) -> None:
        """Send the ``compacted`` events not sent yet; one that cannot be sent now (Kafka away,
        the producer still starting) stays in the outbox for the next sweep, so deletions and
        compactions never wait on it."""
        for event_id, payload in await self.lifecycle.outbox():
            event = orjson.loads(payload)
            try:
                await asyncio.wait_for(self.send_event(
                    f"{event['database']}/{event['table']}".encode(), payload), SEND_TIMEOUT)
            except (asyncio.TimeoutError, KafkaError) as exc:
                log.warning("compacted event not sent yet (%r); retried at the next sweep", exc)
                return
            await self.lifecycle.outbox_done(event_id)


def register_compaction(app: faust.App, settings: Settings, topics: PipelineTopics) -> None:
    """Run the compactor as a task of the worker."""

    async def send_event(key: bytes, payload: bytes) -> None:
        fut = await topics.persisted.send(key=key, value=payload)
        await fut

    @app.task
    async def compactor() -> None:
        catalog = Catalog.connect(settings.redis_url, settings.app_id)
        engine_catalog = EngineCatalog(catalog.redis, settings.app_id)
        compactor = Compactor(settings, catalog, open_store(settings), send_event)
        dirty: set[tuple[str, str]] = set()
        wake = asyncio.Event()

        async def on_persisted(records) -> bool:
            for record in records:
                try:
                    event = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                if event.get("kind", "persisted") == "persisted":
                    dirty.add((event.get("database", ""), event.get("table", "")))
            if dirty:
                wake.set()
            return True

        listener = GroupConsumer(settings.kafka_bootstrap,
                                 GroupSpec(group_id=f"{settings.app_id}.compactor",
                                           topic=settings.persisted_topic,
                                           start_ms=int(time.time() * 1000),
                                           lag_prefix="compactor\x1f\x1f\x1f"), engine_catalog)
        listening = asyncio.create_task(listener.run(on_persisted))
        log.info("compactor started: every %.0f s, %d files per level, grace %.0f s",
                 settings.compact_interval, settings.compact_min_files, settings.compact_grace)
        next_full = time.monotonic()
        pending = False  # files waiting for their grace period to end
        try:
            while True:
                timeout = max(0.0, next_full - time.monotonic())
                if pending:
                    timeout = min(timeout, max(0.2, settings.compact_grace / 2))
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
                try:
                    if time.monotonic() >= next_full:
                        dirty.clear()
                        await compactor.sweep()
                        next_full = time.monotonic() + settings.compact_interval
                    elif dirty:
                        tables, _ = set(dirty), dirty.clear()
                        await compactor.sweep(tables)
                    else:
                        await compactor.delete_due()
                    pending = await compactor.lifecycle.pending_deletions() > 0
                except asyncio.CancelledError:
                    raise
                except Exception:  # Redis or the store away: try again at the next sweep
                    log.exception("compaction sweep failed")
                    await asyncio.sleep(1.0)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await catalog.close()
