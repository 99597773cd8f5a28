"""Recovery: seconds from worker start to ready with N buffered rows, for both buffer stores.

Starts its own Kafka and Redis (the project's dev-stack code, free ports, temp dir), buffers
N TSBS cpu rows (persistence thresholds out of reach), stops the worker cleanly and starts it
again, timing start → "Worker ready" (Faust: changelog recovery done, streams resumed). Run for
the RocksDB store (local state, tail replay) and the memory store (full changelog replay).

    python -m benchmarks.recovery --rows 1000000
"""
from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import click
import httpx
from aiokafka import AIOKafkaProducer

from influent.model import MAX_MESSAGE_BYTES
from benchmarks.tsbs import generate_messages
from influent.config import Settings
from influent import devstack


def wait_ready_line(log_path: Path, offset: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            if b"Worker ready" in fh.read():
                return time.monotonic() - start
        time.sleep(0.05)
    raise TimeoutError(f"worker not ready in {timeout}s; see {log_path}")


async def produce(settings: Settings, messages: list[bytes], db: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=MAX_MESSAGE_BYTES, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(settings.writes_topic, m, headers=[("db", db.encode())],
                                       partition=i % settings.partitions)
                   for i, m in enumerate(messages)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def count(settings: Settings, db: str) -> int:
    resp = httpx.get(f"{settings.http_url}/api/v3/query_sql",
                     params={"db": db, "q": "SELECT count(*) AS n FROM cpu"}, timeout=120)
    return resp.json()[0]["n"] if resp.status_code == 200 else 0


def measure_store(store: str, base: Settings, messages: list[bytes], rows: int, work: Path) -> dict:
    settings = base.replace(store=store, topic_prefix=f"rec{uuid.uuid4().hex[:6]}.",
                            state_dir=work / store, worker_web_port=devstack.free_port(),
                            http_bind=f"127.0.0.1:{devstack.free_port()}")
    logs = work / store / "logs"
    worker = devstack.start_worker(settings, logs)
    api = devstack.start_api(settings, logs)
    db = "bench"
    try:
        t0 = time.monotonic()
        asyncio.run(produce(settings, messages, db))
        while count(settings, db) < rows:
            time.sleep(0.5)
        ingest_s = time.monotonic() - t0
        devstack.stop(worker, timeout=120)
        log_path = worker.log_path
        offset = log_path.stat().st_size
        t1 = time.monotonic()
        worker = devstack.launch_worker(settings, logs)
        ready_s = wait_ready_line(log_path, offset, timeout=600)
        assert count(settings, db) == rows
        return {"store": store, "rows": rows, "ingest_s": ingest_s, "ready_s": ready_s,
                "restart_total_s": time.monotonic() - t1}
    finally:
        devstack.stop(api)
        devstack.stop(worker, timeout=120)


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
@click.option("--stores", default="rocksdb,memory", show_default=True)
def main(rows: int, stores: str) -> None:
    messages = generate_messages(rows, 5000)
    with tempfile.TemporaryDirectory(prefix="influent-recovery-") as tmp:
        work = Path(tmp)
        kafka_port, controller, redis_port = devstack.free_ports(3)
        kafka = devstack.start_kafka(work / "kafka", work / "logs", kafka_port, controller)
        redis = devstack.start_redis(work / "redis", work / "logs", redis_port)
        try:
            base = Settings(kafka_bootstrap=f"127.0.0.1:{kafka_port}",
                            redis_url=f"redis://127.0.0.1:{redis_port}/0", partitions=8,
                            persist_max_rows=10**9, persist_max_bytes=2**40, persist_max_age=10**6)
            results = [measure_store(s, base, messages, rows, work) for s in stores.split(",")]
        finally:
            devstack.stop(redis)
            devstack.stop(kafka)
    print(f"recovery with {rows:,} buffered rows (TSBS cpu, 8 partitions)")
    print(f"{'store':<10}{'ingest s':>10}{'start→ready s':>16}")
    for r in results:
        print(f"{r['store']:<10}{r['ingest_s']:>10.1f}{r['ready_s']:>16.2f}")


if __name__ == "__main__":
    main()
