"""What the explorer's pipeline panel shows, read from Kafka and Redis by the query API.

The API process never runs Faust, so it looks at the pipeline from the outside, as an operator
would: the worker group's committed offsets against each partition's end offset (Kafka), the
buffer snapshots and file records in the catalog (Redis), the last persist events (the
``persisted`` topic), and the processing engine's triggers, subscriptions, counters, lags and
error log lines (Redis). A part that cannot be read (Kafka down, say) is reported in
``problems`` and the rest is still answered, so the panel never goes blank.

The shape of the answer is documented in the README (``GET /api/v3/explorer/pipeline``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from influent.config import Settings
from persist.catalog import Catalog
from persist.engine_catalog import EngineCatalog, EngineKeys
from topics.wire import decode_batches

log = logging.getLogger("influent.api.explorer")

#: How many persist events and engine error lines the panel lists.
RECENT = 20
#: How long one Kafka read may take before the panel answers without it.
KAFKA_TIMEOUT_S = 5.0


@dataclass
class PartitionStatus:
    """One source partition of the writes topic, as the pipeline panel shows it."""

    partition: int
    writes_end: int | None = None
    writes_committed: int | None = None
    writes_lag: int | None = None
    accepted_end: int | None = None
    accepted_committed: int | None = None
    accepted_lag: int | None = None
    buffered_batches: int = 0
    buffered_rows: int = 0
    buffered_bytes: int = 0
    files: int = 0
    last_persist: float | None = None  # unix seconds of the newest file from this partition


def lag(end: int | None, committed: int | None) -> int | None:
    """Records not yet committed by the group; the whole log when it never committed."""
    if end is None:
        return None
    return max(0, end - (committed if committed is not None and committed >= 0 else 0))


def snapshot_partition(field_name: str) -> int | None:
    """The source partition named by a snapshot field ``<partition>:<offset>:<partition key>``."""
    head = field_name.split(":", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class SnapshotStats:
    rows: int
    min_time: int | None  # ns
    max_time: int | None


def snapshot_stats(data: bytes) -> SnapshotStats:
    """Rows and time bounds of a buffer snapshot (an Arrow IPC stream, read zero-copy)."""
    table = decode_batches(data)
    if table.num_rows == 0 or "time" not in table.column_names:
        return SnapshotStats(table.num_rows, None, None)
    bounds = pc.min_max(table.column("time").cast(pa.int64()))
    return SnapshotStats(table.num_rows, bounds["min"].as_py(), bounds["max"].as_py())


def persist_event_summary(raw: bytes) -> dict[str, Any] | None:
    """The fields of a persist event the panel lists, or None for a record that is not one."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    keys = ("database", "table", "partition_key", "path", "rows", "size", "min_time", "max_time",
            "source_partition", "min_offset", "max_offset", "created_at")
    return {k: event.get(k) for k in keys}


@dataclass
class SnapshotStatsCache:
    """Rows and time bounds per buffer snapshot, remembered by (db, table, field, size): a
    snapshot's bytes never change while it exists, so each is fetched and read once."""

    stats: dict[tuple[str, str, str, int], SnapshotStats] = field(default_factory=dict)

    async def read(self, catalog: Catalog, db: str, table: str, sizes: dict[str, int]
                   ) -> dict[str, SnapshotStats]:
        keys = {f: (db, table, f, n) for f, n in sizes.items()}
        missing = [f for f, k in keys.items() if k not in self.stats]
        values = await catalog.snapshot_values(db, table, missing)
        for f, value in zip(missing, values):
            if value is not None:  # persisted meanwhile: it no longer counts
                self.stats[keys[f]] = await asyncio.to_thread(snapshot_stats, value)
        present = set(keys.values())
        for k in [k for k in self.stats if k[:2] == (db, table) and k not in present]:
            del self.stats[k]
        return {f: self.stats[k] for f, k in keys.items() if k in self.stats}


def time_bounds(values: list[int | None], pick) -> int | None:
    found = [v for v in values if v is not None]
    return pick(found) if found else None


class PipelineReader:
    """Kafka clients and caches of one API process for the pipeline panel (started lazily,
    closed with the API)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.snapshot_stats = SnapshotStatsCache()
        self.lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self.admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                        request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
            await admin.start()
            self.admin = admin
        if self.consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                        group_id=None, enable_auto_commit=False,
                                        request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
            await consumer.start()
            self.consumer = consumer
        return self.admin, self.consumer

    async def close(self) -> None:
        consumer, admin, self.consumer, self.admin = self.consumer, self.admin, None, None
        try:
            if consumer is not None:
                await consumer.stop()
            if admin is not None:
                await admin.close()
        except Exception:  # the clients are dropped either way; new ones start on next use
            log.debug("closing the explorer's Kafka clients failed", exc_info=True)

    async def status(self, catalog: Catalog) -> dict[str, Any]:
        """The pipeline panel's JSON (see the module docstring)."""
        async with self.lock:
            problems: list[str] = []
            parts = {p: PartitionStatus(p) for p in range(self.settings.partitions)}
            group: dict[str, Any] = {"id": self.settings.app_id}
            persists: list[dict[str, Any]] = []
            try:
                group.update(await asyncio.wait_for(self._offsets(parts), KAFKA_TIMEOUT_S * 2))
                persists = await asyncio.wait_for(self._recent_persists(), KAFKA_TIMEOUT_S * 2)
            except Exception as exc:  # Kafka unreachable: say so, answer the rest
                problems.append(f"kafka: {type(exc).__name__}: {exc}")
                await self.close()
            tables = await self._buffers_and_files(catalog, parts)
            engine = await engine_status(catalog, self.settings.app_id)
            return {"time": time.time(), "group": group,
                    "partitions": [asdict(p) for p in sorted(parts.values(), key=lambda p: p.partition)],
                    "tables": tables, "persists": persists, **engine, "problems": problems}

    async def _offsets(self, parts: dict[int, PartitionStatus]) -> dict[str, Any]:
        admin, consumer = await self._clients()
        s = self.settings
        tps = [TopicPartition(t, p) for t in (s.writes_topic, s.accepted_topic) for p in parts]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(s.app_id, partitions=tps[len(parts):])
        committed.update(await admin.list_consumer_group_offsets(  # ingest shows its positions
            s.ingest_group, partitions=tps[:len(parts)]))
        for tp in tps:
            end = ends.get(tp)
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else None
            status = parts[tp.partition]
            prefix = "writes" if tp.topic == s.writes_topic else "accepted"
            setattr(status, f"{prefix}_end", end)
            setattr(status, f"{prefix}_committed", done)
            setattr(status, f"{prefix}_lag", lag(end, done))
        return await self._group_state(admin)

    async def _group_state(self, admin: AIOKafkaAdminClient) -> dict[str, Any]:
        """State and member count of the worker group (``Empty`` when no worker runs)."""
        for response in await admin.describe_consumer_groups([self.settings.app_id]):
            for described in response.groups:
                # (error_code, group_id, state, protocol_type, protocol, members, ...)
                return {"state": described[2], "members": len(described[5])}
        return {"state": "unknown", "members": 0}

    async def _recent_persists(self) -> list[dict[str, Any]]:
        """The last persist events of the ``persisted`` topic, newest first."""
        admin, consumer = await self._clients()
        topic = self.settings.persisted_topic
        described = await admin.describe_topics([topic])
        partitions = sorted(p["partition"] for t in described if not t.get("error_code")
                            for p in t.get("partitions") or [])
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        wanted = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        if not wanted:
            return []
        consumer.assign(list(wanted))
        for tp, end in wanted.items():
            consumer.seek(tp, max(starts[tp], end - RECENT))
        records = []
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        while wanted and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for tp, batch in fetched.items():
                records.extend(batch)
                if batch and batch[-1].offset + 1 >= wanted.get(tp, 0):
                    wanted.pop(tp, None)
            for tp in list(wanted):
                if await consumer.position(tp) >= wanted[tp]:
                    wanted.pop(tp)
        consumer.assign([])
        records.sort(key=lambda r: r.timestamp, reverse=True)
        events = (persist_event_summary(r.value) for r in records if r.value)
        return [e for e in events if e is not None][:RECENT]

    async def _buffers_and_files(self, catalog: Catalog, parts: dict[int, PartitionStatus]
                                 ) -> list[dict[str, Any]]:
        """Fill buffered batches/rows/bytes, files and last persist per partition; answer the
        per-table totals."""
        tables = []
        for db in sorted(await catalog.databases()):
            for table in sorted(await catalog.tables(db)):
                _, files, sizes = await catalog.table_state_sizes(db, table)
                stats = await self.snapshot_stats.read(catalog, db, table, sizes)
                for name, size in sizes.items():
                    p = snapshot_partition(name)
                    if p is None:
                        continue
                    status = parts.setdefault(p, PartitionStatus(p))
                    status.buffered_batches += 1
                    status.buffered_bytes += size
                    status.buffered_rows += stats[name].rows if name in stats else 0
                for meta in files:
                    status = parts.setdefault(meta.source_partition, PartitionStatus(meta.source_partition))
                    status.files += 1
                    if meta.created_at and (status.last_persist or 0) < meta.created_at:
                        status.last_persist = meta.created_at
                snaps = list(stats.values())
                tables.append({
                    "db": db, "table": table, "buffered_rows": sum(x.rows for x in snaps),
                    "buffered_bytes": sum(sizes.values()), "files": len(files),
                    "file_rows": sum(m.rows for m in files),
                    "file_bytes": sum(m.size for m in files),
                    "min_time": time_bounds([x.min_time for x in snaps] + [m.min_time for m in files], min),
                    "max_time": time_bounds([x.max_time for x in snaps] + [m.max_time for m in files], max)})
        return tables


async def engine_status(catalog: Catalog, namespace: str) -> dict[str, Any]:
    """Triggers and subscriptions with their state, counters and lag, and the last engine
    error lines (``system.processing_engine_logs`` level ``ERROR``)."""
    engine = EngineCatalog(catalog.redis, namespace)
    triggers, subscriptions, stats, lags = await asyncio.gather(
        engine.triggers(), engine.subscriptions(), engine.stats(), engine.lags())
    lag_sums: dict[tuple[str, ...], int] = {}
    for key, value in lags.items():
        if len(key) == 5:
            lag_sums[key[:4]] = lag_sums.get(key[:4], 0) + value
    trigger_rows = [{"db": t.database, "name": t.name, "plugin": t.plugin_filename,
                     "specification": t.specification, "disabled": t.disabled,
                     "calls": stats.get(("calls", t.database, t.name), 0),
                     "errors": stats.get(("errors", t.database, t.name), 0),
                     "lag": lag_sums.get(("trigger", t.database, t.name, ""))}
                    for t in sorted(triggers, key=lambda t: (t.database, t.name))]
    subscription_rows = []
    for sub in sorted(subscriptions, key=lambda s: (s.database, s.name)):
        units = ["ANY"] if sub.mode == "ANY" else [d.uri for d in sub.destinations]
        for unit in units:
            key = (sub.database, sub.name, unit)
            subscription_rows.append({
                "db": sub.database, "name": sub.name, "mode": sub.mode, "destination": unit,
                "tables": list(sub.tables), "predicate": sub.predicate,
                "lag": lag_sums.get(("subscription",) + key),
                "delivered": stats.get(("subscription_delivered",) + key, 0),
                "failures": stats.get(("subscription_failures",) + key, 0),
                "dropped": stats.get(("subscription_dropped",) + key, 0)})
    return {"triggers": trigger_rows, "subscriptions": subscription_rows,
            "errors": await recent_errors(catalog, namespace)}


async def recent_errors(catalog: Catalog, namespace: str, count: int = RECENT
                        ) -> list[dict[str, Any]]:
    """The newest ``ERROR`` lines of the plugin log stream, newest first (scanning at most a
    few thousand lines back)."""
    out: list[dict[str, Any]] = []
    for _, raw in await catalog.redis.xrevrange(EngineKeys(namespace).logs, count=5000):
        entry = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        if entry.get("level") != "ERROR":
            continue
        out.append({"time": int(entry.get("time", 0)) / 1e9, "db": entry.get("db", ""),
                    "trigger": entry.get("trigger", ""), "text": entry.get("text", "")})
        if len(out) >= count:
            break
    return out
