"""Queries under load: single-groupby-1-1-1 latency while ingest runs, and queries per second
from concurrent clients, on influent and on the peer, one after the other.

1. under ingest: a producer offers new TSBS lines (later timestamps, same hosts) at
   ``rate`` lines/s for ``seconds`` -- influent through Kafka in messages of
   ``lines_per_message``, the peer through ``/write`` batches of the same size -- while one
   client runs single-groupby-1-1-1 queries back to back over the loaded data; p50/p99 of
   their latencies and the ingest rate actually offered;
2. concurrency, once influent has caught up with that ingest (its row count stops moving):
   ``clients`` threads, each with its own kept-alive connection, run single-groupby-1-1-1
   queries for ``seconds``; completed queries per second.
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable

import httpx
from aiokafka import AIOKafkaProducer

from benchmarks.ingest import chunk_lines, influent_count
from benchmarks.peer import Peer
from benchmarks.queries import DevopsQueries, percentile
from benchmarks.tsbs import generate_lines
from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES

KIND = "single-groupby-1-1-1"


def _paced(batches: list[bytes], rate_batches: float, send: Callable[[bytes], None],
           stop: threading.Event) -> dict:
    """Send ``batches`` at ``rate_batches`` per second until done or ``stop``."""
    t0 = time.monotonic()
    sent = 0
    for i, batch in enumerate(batches):
        if stop.is_set():
            break
        delay = t0 + i / rate_batches - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send(batch)
        sent += 1
    return {"batches": sent, "seconds": time.monotonic() - t0}


def _kafka_sender(settings: Settings, db: str):
    """A blocking ``send(batch)`` over one producer on its own event loop thread."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1,
                                    max_request_size=MAX_MESSAGE_BYTES, linger_ms=5)
        await producer.start()
        return producer

    producer = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    pending: list = []

    def send(batch: bytes) -> None:  # enqueued now, acknowledged by close()
        partition = len(pending) % settings.partitions
        pending.append(asyncio.run_coroutine_threadsafe(
            producer.send(settings.writes_topic, batch, headers=[("db", db.encode())],
                          partition=partition), loop).result(60))

    def close() -> None:
        async def finish() -> None:
            await asyncio.gather(*pending)
            await producer.stop()

        asyncio.run_coroutine_threadsafe(finish(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)

    return send, close


def _under_ingest(ask: Callable[[httpx.Client, str], None], texts: list[str],
                  batches: list[bytes], rate_batches: float, send: Callable[[bytes], None]
                  ) -> dict:
    stop = threading.Event()
    box: dict = {}
    writer = threading.Thread(target=lambda: box.update(
        _paced(batches, rate_batches, send, stop)), daemon=True)
    latencies: list[float] = []
    with httpx.Client(timeout=600) as client:
        ask(client, texts[0])  # warm-up
        writer.start()
        i = 0
        while writer.is_alive():
            t0 = time.perf_counter()
            ask(client, texts[i % len(texts)])
            latencies.append(time.perf_counter() - t0)
            i += 1
    stop.set()
    writer.join()
    return {"queries": len(latencies), "p50_s": statistics.median(latencies),
            "p99_s": percentile(latencies, 0.99), "ingest_batches": box.get("batches"),
            "ingest_seconds": box.get("seconds")}


def _concurrent(ask: Callable[[httpx.Client, str], None], texts: list[str], clients: int,
                seconds: float) -> dict:
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        with httpx.Client(timeout=600) as client:
            i = n
            while time.monotonic() < deadline:
                ask(client, texts[i % len(texts)])
                done[n] += 1
                i += clients

    t0 = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"clients": clients, "queries": sum(done), "seconds": elapsed,
            "qps": sum(done) / elapsed}


def _caught_up(settings: Settings, db: str, timeout: float = 300.0) -> float:
    """Seconds until the worker has made the produced lines visible (the row count stops
    moving), so the concurrency figure is not a measure of the ingest backlog."""
    t0 = time.monotonic()
    last, still = -1, 0
    with httpx.Client(timeout=600) as client:
        while time.monotonic() - t0 < timeout and still < 3:
            n = influent_count(client, settings, db)
            still = still + 1 if n == last else 0
            last = n
            time.sleep(1.0)
    return time.monotonic() - t0


def measure(settings: Settings, peer: Peer, db: str, hosts: int, start_ns: int, end_ns: int,
            seconds: float, rate: int = 50_000, lines_per_message: int = 5_000,
            clients: int = 8) -> dict:
    """Both measurements on influent, then on the peer (fresh lines for each ingest)."""
    gen = DevopsQueries(hosts, start_ns, end_ns, seed=777)
    texts = [gen.generate(KIND) for _ in range(50)]
    hours = rate * seconds / hosts * 10 / 3600  # one line per host every 10 s
    fresh = list(generate_lines(hosts, hours, seed=99, start_ns=end_ns))
    batches = chunk_lines(fresh, lines_per_message)
    rate_batches = rate / lines_per_message

    def ask_influent(client: httpx.Client, q: str) -> None:
        client.get(f"{settings.http_url}/query", params={"db": db, "q": q}).raise_for_status()

    def ask_peer(client: httpx.Client, q: str) -> None:
        client.get(f"{peer.url}/query", params={"db": db, "q": q}).raise_for_status()

    send, close = _kafka_sender(settings, db)
    try:
        influent = {"under_ingest": _under_ingest(ask_influent, texts, batches, rate_batches,
                                                  send)}
    finally:
        close()
    influent["under_ingest"]["caught_up_s"] = _caught_up(settings, db)
    influent["concurrent"] = _concurrent(ask_influent, texts, clients, seconds)
    with httpx.Client(timeout=600) as writer:
        def peer_write(batch: bytes) -> None:
            writer.post(f"{peer.url}/write", params={"db": db, "precision": "ns"},
                        content=batch).raise_for_status()

        peer_result = {"under_ingest": _under_ingest(ask_peer, texts, batches, rate_batches,
                                                     peer_write)}
    peer_result["concurrent"] = _concurrent(ask_peer, texts, clients, seconds)
    for side in (influent, peer_result):
        u = side["under_ingest"]
        u["offered_lines_per_s"] = (u["ingest_batches"] * lines_per_message
                                    / max(u["ingest_seconds"], 1e-9))
    return {"kind": KIND, "rate": rate, "seconds": seconds, "lines_per_message": lines_per_message,
            "influent": influent, "peer": peer_result}
