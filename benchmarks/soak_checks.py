"""The soak's end checks, against what was acknowledged (the ledger): rows, rejected lines,
files (catalog, object store, persist events), the subscription's and the trigger's copies."""
from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.soak_load import TABLE, Ledger
from influent.config import Settings
from persist.object_store import LocalStore

SUBSCRIPTION_LINE = re.compile(rf"^{TABLE},s=(\S+) v=(-?\d+)i (\d+)$")
MIRROR = "mirror"


def query_table(settings: Settings, db: str, q: str) -> pa.Table | None:
    """The answer as Arrow (``format=parquet``), None when the query fails."""
    try:
        resp = httpx.get(f"{settings.http_url}/api/v3/query_sql",
                         params={"db": db, "q": q, "format": "parquet"}, timeout=300)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return pq.read_table(io.BytesIO(resp.content)) if resp.content else pa.table({})


def _ns(column: pa.ChunkedArray) -> list[int]:
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.int64())
    return column.to_pylist()


def check_rows(settings: Settings, ledger: Ledger, db: str) -> dict:
    """Every acknowledged key once, with its last value; nothing else."""
    expected = {(s, t): v for (d, s, t), v in ledger.last.items() if d == db}
    table = query_table(settings, db, f"SELECT s, time, v FROM {TABLE}")
    if table is None:
        return {"ok": False, "error": "query failed", "expected": len(expected)}
    keys = list(zip(table.column("s").to_pylist(), _ns(table.column("time"))))
    values = table.column("v").to_pylist()
    seen = Counter(keys)
    got = dict(zip(keys, values))
    lost = [k for k in expected if k not in got]
    wrong = [k for k, v in expected.items() if k in got and got[k] != v]
    return {"ok": not lost and not wrong and len(keys) == len(expected) == len(seen),
            "expected": len(expected), "rows": len(keys), "lost": len(lost),
            "duplicated": sum(n - 1 for n in seen.values() if n > 1),
            "wrong_value": len(wrong), "unexpected": len([k for k in seen if k not in expected]),
            "lost_sample": [list(k) for k in lost[:5]],
            "wrong_sample": [[k, got[k], ledger.history.get((db, *k))] for k in wrong[:5]]}


def check_rejected(records: list, ledger: Ledger) -> dict:
    """Every bad line sent is on ``influent.rejected`` for its database, with a reason."""
    found = set()
    for r in records:
        try:
            doc = json.loads(r.value)
        except ValueError:
            continue
        if doc.get("reason"):
            found.add((doc.get("database"), doc.get("original")))
    missing = [b for b in ledger.bad if b not in found]
    return {"ok": not missing, "bad_lines": len(ledger.bad), "missing": len(missing),
            "missing_sample": missing[:5]}


def catalog_files(settings: Settings) -> dict[str, dict]:
    """Every Parquet file record in the catalog, by object path."""
    r = redis.Redis.from_url(settings.redis_url)
    try:
        files = {}
        for key in r.scan_iter(f"{settings.app_id}:db:*:t:*:files"):
            for path, record in r.hgetall(key).items():
                files[path.decode()] = json.loads(record)
        return files
    finally:
        r.close()


def check_files(settings: Settings, persisted: list, objects: Path) -> dict:
    """Catalog files are in the store and were announced; no object outside the catalog."""
    files = catalog_files(settings)
    stored = {o.path for o in LocalStore(objects).list() if o.path.endswith(".parquet")}
    announced = set()
    for r in persisted:
        try:
            announced.add(json.loads(r.value)["path"])
        except (ValueError, KeyError):
            continue
    absent = sorted(set(files) - stored)
    unannounced = sorted(set(files) - announced)
    orphans = sorted(stored - set(files))
    return {"ok": not absent and not unannounced and not orphans, "catalog_files": len(files),
            "missing_in_store": len(absent), "not_announced": len(unannounced),
            "orphan_objects": len(orphans), "orphan_sample": orphans[:5],
            "newest_file_at": max((f.get("created_at", 0) for f in files.values()), default=0)}


def check_subscription(records: list, written: set[tuple[str, int, int]]) -> dict:
    """Every (series, time, value) ``written`` was forwarded at least once."""
    seen = set()
    for r in records:
        for line in r.value.decode("utf-8", "replace").split("\n"):
            m = SUBSCRIPTION_LINE.match(line.strip())
            if m:
                seen.add((m.group(1), int(m.group(3)), int(m.group(2))))
    missing = written - seen
    return {"ok": not missing, "writes": len(written), "missing": len(missing),
            "missing_sample": sorted(missing)[:5]}


def check_trigger(settings: Settings, written: set[tuple[str, int, int]], db: str) -> dict:
    """The on-write trigger copied every (series, time, value) ``written`` to ``db`` into
    ``mirror``."""
    table = query_table(settings, db, f"SELECT s, v, time FROM {MIRROR}")
    if table is None:
        return {"ok": False, "error": "query failed", "writes": len(written)}
    seen = set(zip(table.column("s").to_pylist(), _ns(table.column("time")),
                   (int(v) for v in table.column("v").to_pylist())))
    missing = written - seen
    return {"ok": not missing, "writes": len(written), "missing": len(missing),
            "missing_sample": sorted(missing)[:5]}


async def read_topic(settings: Settings, topic: str, timeout: float = 120) -> list:
    """Every record of ``topic`` up to its current end (all partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                break
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def run_checks(settings: Settings, ledger: Ledger, dbs: list[str], objects: Path,
               subscription: tuple[str, str], trigger_db: str) -> dict:
    """Every check once; ``ok`` when all are green."""
    sub_db, sub_topic = subscription
    rejected = asyncio.run(read_topic(settings, settings.rejected_topic))
    persisted = asyncio.run(read_topic(settings, settings.persisted_topic))
    forwarded = asyncio.run(read_topic(settings, sub_topic))
    checks = {"rows": {db: check_rows(settings, ledger, db) for db in dbs},
              "rejected": check_rejected(rejected, ledger),
              "files": check_files(settings, persisted, objects),
              "subscription": check_subscription(forwarded, ledger.pairs[sub_db]),
              "trigger": check_trigger(settings, ledger.pairs[trigger_db], trigger_db)}
    checks["ok"] = all(c["ok"] for c in checks["rows"].values()) and all(
        checks[k]["ok"] for k in ("rejected", "files", "subscription", "trigger"))
    return checks
