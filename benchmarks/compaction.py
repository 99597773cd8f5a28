"""Compaction on TSBS data: hundreds of small files before, a handful after, same answers.

    python -m benchmarks.compaction --hosts 20 --hours 2 --lines-per-message 50

Starts its own Kafka, Redis, worker and query API (the dev stack code) on free ports in a temp
dir. TSBS cpu-only data goes to Kafka in small messages with a persist threshold of one message,
and a clean stop of the worker persists what is left: hundreds of L0 files. The TSBS devops
InfluxQL queries run on ``/query`` (answers kept, median latency), object-store bytes and file
counts are read from the catalog; then the worker starts again with compaction on
(``INFLUENT_COMPACT_MIN_FILES`` 8, a 2 s interval and grace period) until every partition is
compacted and no replaced file is left, and the same queries run again. Prints the before/after
table and writes benchmarks/results/compaction.json.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import click
import httpx
import redis

from benchmarks.queries import QUERY_TYPES, DevopsQueries, compare
from benchmarks.tsbs import INTERVAL_NS, START_NS, generate_messages
from influent import devstack
from influent.config import Settings
from persist.parquet_files import ParquetFileMeta

DB = "bench"
RESULTS = Path(__file__).resolve().parent / "results" / "compaction.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def files_state(settings: Settings) -> dict:
    r = redis.Redis.from_url(settings.redis_url)
    try:
        metas = [ParquetFileMeta.from_json(v)
                 for v in r.hvals(f"{settings.app_id}:db:{DB}:t:cpu:files")]
        pending = r.zcard(f"{settings.app_id}:gc") + r.scard(f"{settings.app_id}:gc_claimed")
    finally:
        r.close()
    partitions: dict[str, int] = {}
    for m in metas:
        partitions[m.partition_key] = partitions.get(m.partition_key, 0) + 1
    return {"files": len(metas), "bytes": sum(m.size for m in metas),
            "rows": sum(m.rows for m in metas), "partitions": partitions,
            "l0_files": sum(1 for m in metas if m.level == 0),
            "levels": sorted({m.level for m in metas}), "pending_deletions": pending}


async def produce(settings: Settings, messages: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=32 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(settings.writes_topic, m, headers=[("db", DB.encode())])
                   for m in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def run_queries(url: str, queries: list[tuple[str, str]], iterations: int) -> dict:
    out = {}
    with httpx.Client(timeout=300) as client:
        for kind, q in queries:
            times, body = [], b""
            for _ in range(iterations):
                t0 = time.perf_counter()
                resp = client.post(f"{url}/query", data={"db": DB, "q": q})
                times.append(time.perf_counter() - t0)
                resp.raise_for_status()
                body = resp.content
            out[kind] = {"median_s": statistics.median(times), "body": body.decode()}
    return out


def object_store_bytes(settings: Settings) -> int:
    """Bytes of the database's objects in the (local) object store, replaced files included
    until the sweep deletes them."""
    root = settings.state_dir / "objects" / DB
    return sum(o.stat().st_size for o in root.rglob("*") if o.is_file()) if root.exists() else 0


def wait_compacted(settings: Settings, timeout: float) -> dict:
    """Until every partition is down to a handful of files, no L0 run is left to merge and
    no replaced file waits for deletion."""
    deadline = time.monotonic() + timeout
    while True:
        state = files_state(settings)
        if (max(state["partitions"].values(), default=0) <= 8 and state["l0_files"] < 8 * max(
                1, len(state["partitions"])) and state["pending_deletions"] == 0
                and state["levels"] and max(state["levels"]) > 0) or time.monotonic() > deadline:
            return state
        time.sleep(1)


def measure_on(base: Settings, logs: Path, hosts: int, hours: float, lines_per_message: int,
               iterations: int) -> dict:
    """The measurement on running Kafka and Redis (``base`` names them, with a topic prefix of
    its own): starts the query API and a worker with compaction off, writes, stops it, queries,
    starts a compacting worker, waits, queries again."""
    lines = int(hosts * hours * 3600 * 1_000_000_000 // INTERVAL_NS)
    base = base.replace(persist_max_rows=lines_per_message, persist_max_bytes=2**40,
                        persist_max_age=24 * 3600.0,
                        ingest_max_rows=1)  # one message per ingest batch: each one a file
    frozen = base.replace(compact_min_files=10**9, compact_interval=24 * 3600.0)
    compacting = base.replace(compact_interval=2.0, compact_grace=2.0)
    api = worker = None
    try:
        api = devstack.launch_api(base, logs, die_with_parent=True)
        worker = devstack.launch_worker(frozen, logs, die_with_parent=True)
        devstack.wait_ready(worker, 180)
        devstack.wait_ready(api, 60)
        log(f"compaction: writing {lines:,} TSBS lines in messages of {lines_per_message}")
        asyncio.run(produce(base, generate_messages(lines, lines_per_message, hosts=hosts)))
        deadline = time.monotonic() + 600
        while files_state(base)["rows"] < lines * 0.5 and time.monotonic() < deadline:
            time.sleep(1)
        devstack.stop(worker, timeout=300)  # a clean stop persists every buffer
        worker = None
        before = {**files_state(base), "object_store_bytes": object_store_bytes(base)}
        log(f"  before: {before['files']} files, {before['bytes']:,} bytes, {before['rows']:,} rows")
        end_ns = START_NS + int(hours * 3600 * 1_000_000_000)
        gen = DevopsQueries(hosts, START_NS, end_ns)
        queries = [(kind, gen.generate(kind)) for kind in QUERY_TYPES]
        q_before = run_queries(base.http_url, queries, iterations)

        started = time.monotonic()
        worker = devstack.launch_worker(compacting, logs, die_with_parent=True)
        devstack.wait_ready(worker, 180)
        after = wait_compacted(base, 1800)
        compact_s = time.monotonic() - started
        after["object_store_bytes"] = object_store_bytes(base)
        log(f"  after {compact_s:.1f} s: {after['files']} files, {after['bytes']:,} bytes")
        q_after = run_queries(base.http_url, queries, iterations)
        answers = {kind: compare(q_after[kind]["body"].encode(), q_before[kind]["body"].encode())[0]
                   for kind, _ in queries}
        return {"hosts": hosts, "hours": hours, "lines": lines,
                "lines_per_message": lines_per_message,
                "before": {**before, "query_median_s": {k: v["median_s"] for k, v in q_before.items()}},
                "after": {**after, "query_median_s": {k: v["median_s"] for k, v in q_after.items()}},
                "compaction_s": compact_s, "answers": answers}
    finally:
        for service in (worker, api):
            if service is not None:
                devstack.stop(service, timeout=120)


def measure(hosts: int, hours: float, lines_per_message: int, iterations: int, work: Path) -> dict:
    """The measurement with Kafka and Redis of its own, in ``work``."""
    logs = work / "logs"
    kafka_port, controller, redis_port = devstack.free_ports(3)
    kafka = devstack.launch_kafka(work / "kafka", logs, kafka_port, controller, die_with_parent=True)
    redis_svc = devstack.launch_redis(work / "redis", logs, redis_port, die_with_parent=True)
    try:
        devstack.wait_ready(redis_svc, 30)
        devstack.wait_ready(kafka, 120)
        base = Settings(state_dir=work / "influent", kafka_bootstrap=f"127.0.0.1:{kafka_port}",
                        redis_url=f"redis://127.0.0.1:{redis_port}/0", topic_prefix="cbench.",
                        partitions=4, http_bind=f"127.0.0.1:{devstack.free_port()}",
                        worker_web_port=devstack.free_port(), log_level="info")
        return measure_on(base, logs, hosts, hours, lines_per_message, iterations)
    finally:
        devstack.stop(redis_svc)
        devstack.stop(kafka, timeout=60)


@click.command()
@click.option("--hosts", default=20, show_default=True)
@click.option("--hours", default=2.0, show_default=True)
@click.option("--lines-per-message", default=50, show_default=True)
@click.option("--iterations", default=3, show_default=True)
def main(hosts: int, hours: float, lines_per_message: int, iterations: int) -> None:
    with tempfile.TemporaryDirectory(prefix="influent-cbench-") as tmp:
        r = measure(hosts, hours, lines_per_message, iterations, Path(tmp))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2))
    b, a = r["before"], r["after"]
    print(f"{'':24}{'before':>14}{'after':>14}")
    print(f"{'files':24}{b['files']:>14,}{a['files']:>14,}")
    print(f"{'catalog bytes':24}{b['bytes']:>14,}{a['bytes']:>14,}")
    print(f"{'object-store bytes':24}{b['object_store_bytes']:>14,}{a['object_store_bytes']:>14,}")
    print(f"{'bytes per row':24}{b['bytes'] / max(1, b['rows']):>14.2f}"
          f"{a['bytes'] / max(1, a['rows']):>14.2f}")
    for kind in b["query_median_s"]:
        print(f"{kind:24}{b['query_median_s'][kind]:>13.3f}s{a['query_median_s'][kind]:>13.3f}s"
              f"  answers: {r['answers'][kind]}")
    print(f"compacted in {r['compaction_s']:.1f} s")


if __name__ == "__main__":
    main()
