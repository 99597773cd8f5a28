"""Ingest: TSBS cpu-only line protocol into influent (Kafka) and into the peer (HTTP), end to end.

influent: the messages are produced to ``influent.writes`` (header ``db``, partitions round
robin, acks=all) as fast as the producer goes; the clock stops at the first
``/api/v3/query_sql`` ``SELECT count(*)`` answer (its response time, so the figure is
conservative) that counts every row. CPU is read from /proc (utime+stime) of the worker's
process group before and after, and also of Kafka, Redis and the query API, to show what the
whole pipeline costs.

peer: the same lines over HTTP ``/write`` in batches, from a few concurrent writers on kept-alive
connections; the clock stops when every write got its 204 and one ``count()`` query saw every
row (1.x makes a write visible when it answers). CPU of ``influxd`` from /proc.
"""
from __future__ import annotations

import asyncio
import http.client
import queue
import threading
import time
import urllib.parse
from collections.abc import Sequence

import httpx
from aiokafka import AIOKafkaProducer

from influent.model import MAX_MESSAGE_BYTES
from benchmarks.peer import Peer, group_cpu_seconds
from influent import devstack
from influent.config import Settings


def chunk_lines(lines: Sequence[str], per: int) -> list[bytes]:
    """Newline-terminated bodies of ``per`` lines each."""
    return [("\n".join(lines[i:i + per]) + "\n").encode() for i in range(0, len(lines), per)]


def cpu_snapshot(services: dict[str, devstack.Service]) -> dict[str, float]:
    return {name: group_cpu_seconds(s.pid) for name, s in services.items()}


def influent_count(client: httpx.Client, settings: Settings, db: str, table: str = "cpu",
                   where: str = "") -> int:
    resp = client.get(f"{settings.http_url}/api/v3/query_sql",
                      params={"db": db, "q": f"SELECT count(*) AS n FROM {table} {where}"})
    if resp.status_code != 200:
        return 0
    rows = resp.json()
    return int(rows[0]["n"]) if rows else 0


async def produce(settings: Settings, messages: Sequence[bytes], db: str,
                  batch_bytes: int = 256 * 1024) -> float:
    """Produce every message (round-robin partitions, acks=all); returns seconds taken.

    Messages are appended to one record batch per partition and each full batch is sent as
    one (``send_batch``): a Python client that awaits ``send`` per message tops out near
    20 000 messages/s of its own CPU, which would measure the client, not the pipeline."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=MAX_MESSAGE_BYTES, linger_ms=5,
                                max_batch_size=max(batch_bytes, max(map(len, messages),
                                                                    default=0) + 1024))
    await producer.start()
    try:
        t0 = time.monotonic()
        headers = [("db", db.encode())]
        topic, parts = settings.writes_topic, settings.partitions
        batches = [producer.create_batch() for _ in range(parts)]
        futures = []
        for i, m in enumerate(messages):
            p = i % parts
            if batches[p].append(key=None, value=m, timestamp=None, headers=headers) is None:
                futures.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=None, value=m, timestamp=None, headers=headers)
        for p, batch in enumerate(batches):
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
        return time.monotonic() - t0
    finally:
        await producer.stop()


def influent_ingest(settings: Settings, services: dict[str, devstack.Service],
                    messages: Sequence[bytes], db: str, rows: int, lines: int,
                    poll: float = 0.25, timeout: float = 1800.0) -> dict:
    """Produce ``messages`` and wait until ``rows`` rows of ``cpu`` are queryable in ``db``."""
    result: dict = {}
    done = threading.Event()

    def producer_thread() -> None:
        try:
            result["produce_s"] = asyncio.run(produce(settings, messages, db))
        except BaseException as exc:  # reported below
            result["produce_error"] = repr(exc)
        finally:
            done.set()

    cpu0 = cpu_snapshot(services)
    t0 = time.monotonic()
    thread = threading.Thread(target=producer_thread, daemon=True)
    thread.start()
    seen = 0
    polls = 0
    with httpx.Client(timeout=300) as client:
        while True:
            time.sleep(poll)
            seen = influent_count(client, settings, db)
            polls += 1
            elapsed = time.monotonic() - t0
            if seen >= rows or "produce_error" in result or elapsed > timeout:
                break
    thread.join(timeout=60)
    cpu1 = cpu_snapshot(services)
    if "produce_error" in result:
        raise RuntimeError(f"producing failed: {result['produce_error']}")
    if seen < rows:
        raise RuntimeError(f"influent: only {seen} of {rows} rows visible after {elapsed:.0f}s")
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    return {
        "lines": lines, "rows": seen, "messages": len(messages),
        "bytes": sum(len(m) for m in messages),
        "seconds": elapsed, "produce_s": result.get("produce_s"), "polls": polls,
        "lines_per_s": lines / elapsed,
        "cpu_s": cpu,
        "worker_cpu_s_per_m_lines": cpu["worker"] / lines * 1e6,
        "pipeline_cpu_s_per_m_lines": sum(cpu.values()) / lines * 1e6,
    }


def _writer(port: int, db: str, work: "queue.Queue[bytes | None]", errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    target = f"/write?{urllib.parse.urlencode({'db': db, 'precision': 'ns'})}"
    try:
        while True:
            body = work.get()
            if body is None:
                return
            conn.request("POST", target, body=body)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 204:
                errors.append(f"{resp.status}: {data[:300]!r}")
                return
    except (OSError, http.client.HTTPException) as exc:
        errors.append(repr(exc))
    finally:
        conn.close()


def peer_ingest(peer: Peer, batches: Sequence[bytes], db: str, rows: int, lines: int,
                writers: int = 4) -> dict:
    """POST every batch to the peer's ``/write`` from ``writers`` threads; wait until visible."""
    peer.create_database(db)
    work: queue.Queue[bytes | None] = queue.Queue()
    for b in batches:
        work.put(b)
    for _ in range(writers):
        work.put(None)
    errors: list[str] = []
    threads = [threading.Thread(target=_writer, args=(peer.http_port, db, work, errors),
                                daemon=True) for _ in range(writers)]
    cpu0 = peer.cpu_seconds()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_s = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"peer writes failed: {errors[:3]}")
    seen = peer.count(db)
    elapsed = time.monotonic() - t0
    cpu = peer.cpu_seconds() - cpu0
    if seen < rows:
        raise RuntimeError(f"peer: only {seen} of {rows} rows visible after its writes")
    return {
        "lines": lines, "rows": seen, "requests": len(batches), "writers": writers,
        "bytes": sum(len(b) for b in batches),
        "seconds": elapsed, "write_s": write_s, "lines_per_s": lines / elapsed,
        "cpu_s": {"influxd": cpu}, "cpu_s_per_m_lines": cpu / lines * 1e6,
    }
