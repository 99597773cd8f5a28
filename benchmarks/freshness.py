"""Freshness: how long from producing a point until a query sees it, under a steady load.

A load of ``rate`` messages per second of ``lines`` TSBS cpu lines each (timestamps near now,
into database ``db``) runs for ``duration`` seconds. Meanwhile a probe — one line
``probe,id=<unique> v=1`` in its own message — is sent every ``probe_every`` seconds and polled
every ``poll`` seconds until a query counts it:

* influent: produced to ``influent.writes`` (acks=all; the clock starts before ``send``), then
  ``/api/v3/query_sql`` ``SELECT count(*) FROM probe WHERE id = '<id>'``;
* peer: ``/write`` (the clock starts before the request), then ``/query``
  ``SELECT count(v) FROM probe WHERE id = '<id>'``.

The latency of a probe is start → the response of the first query that counts it. The load
actually achieved is reported too (a client that cannot keep up is visible, not hidden), and
for influent how long after the load stopped every load row was queryable.
"""
from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence

import httpx
from aiokafka import AIOKafkaProducer

from influent.model import MAX_MESSAGE_BYTES
from benchmarks.peer import Peer
from benchmarks.queries import percentile
from benchmarks.tsbs import generate_lines
from influent.config import Settings

VISIBLE_TIMEOUT = 300.0


def load_messages(rate: float, lines: int, duration: float, start_ns: int) -> list[bytes]:
    """``rate * duration`` messages; each is one 10 s tick of ``lines`` hosts."""
    count = int(rate * duration)
    hours = (count + 1) * 10 / 3600
    out: list[bytes] = []
    chunk: list[str] = []
    for line in generate_lines(lines, hours, seed=7, start_ns=start_ns):
        chunk.append(line)
        if len(chunk) == lines:
            out.append(("\n".join(chunk) + "\n").encode())
            chunk = []
            if len(out) == count:
                break
    return out


def summarise(samples: list[float | None], sent: int, load_s: float, planned: int,
              extra: dict) -> dict:
    ok = sorted(x for x in samples if x is not None)
    return {
        "probes": len(samples), "lost": len(samples) - len(ok),
        "p50_s": statistics.median(ok) if ok else float("nan"),
        "p99_s": percentile(ok, 0.99), "max_s": ok[-1] if ok else float("nan"),
        "mean_s": statistics.fmean(ok) if ok else float("nan"),
        "load_messages": sent, "load_planned": planned,
        "load_msgs_per_s": sent / load_s if load_s else 0.0, **extra,
        "samples_s": [None if x is None else round(x, 4) for x in samples],  # in sending order
    }


async def _pace(messages: Sequence[bytes], rate: float, send) -> tuple[int, float]:
    t0 = time.monotonic()
    sent = 0
    for i, m in enumerate(messages):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(m)
        sent += 1
    return sent, time.monotonic() - t0


async def _probes(duration: float, probe_every: float, poll: float, send_probe, visible_ids,
                  query_s: list[float] | None = None) -> list[float | None]:
    """Send a probe every ``probe_every`` s for ``duration`` s; one poller asks every ``poll`` s
    which outstanding probes are visible (one query for all, so a backlog of unseen probes does
    not multiply the query load). Latencies in sending order; None = not seen in time. Each
    poll query's own duration is appended to ``query_s`` (what the query adds to a latency)."""
    samples: list[float | None] = []
    outstanding: dict[str, tuple[int, float]] = {}
    sending = True

    async def sender() -> None:
        nonlocal sending
        t_begin = time.monotonic()
        i = 0
        while time.monotonic() - t_begin < duration:
            pid = uuid.uuid4().hex
            samples.append(None)
            t0 = time.perf_counter()
            await send_probe(i, pid)
            outstanding[pid] = (i, t0)
            i += 1
            await asyncio.sleep(max(0.0, t_begin + i * probe_every - time.monotonic()))
        sending = False

    async def poller() -> None:
        while sending or outstanding:
            if outstanding:
                asked = time.perf_counter()
                found = await visible_ids(list(outstanding))
                t = time.perf_counter()
                if query_s is not None:
                    query_s.append(t - asked)
                for pid in found:
                    if pid in outstanding:
                        i, t0 = outstanding.pop(pid)
                        samples[i] = t - t0
                for pid, (i, t0) in list(outstanding.items()):
                    if t - t0 > VISIBLE_TIMEOUT:
                        outstanding.pop(pid)
            await asyncio.sleep(poll)

    await asyncio.gather(sender(), poller())
    return samples


def _probe_line(pid: str) -> bytes:
    return f"probe,id={pid} v=1 {time.time_ns()}\n".encode()


async def influent_freshness(settings: Settings, db: str, messages: Sequence[bytes],
                             rate: float, duration: float, probe_every: float,
                             poll: float = 0.02) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=1, max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    headers = [("db", db.encode())]
    pending: list[asyncio.Future] = []
    url = f"{settings.http_url}/api/v3/query_sql"
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            async def sql(q: str) -> list[dict]:
                resp = await client.get(url, params={"db": db, "q": q})
                return resp.json() if resp.status_code == 200 else []

            async def count(q: str) -> int:
                rows = await sql(q)
                return int(rows[0]["n"]) if rows else 0

            counter = iter(range(1 << 62))

            async def send_load(m: bytes) -> None:
                p = next(counter) % settings.partitions
                pending.append(await producer.send(settings.writes_topic, m, headers=headers,
                                                   partition=p))

            async def send_probe(i: int, pid: str) -> None:
                pending.append(await producer.send(settings.writes_topic, _probe_line(pid),
                                                   headers=headers,
                                                   partition=i % settings.partitions))

            async def visible_ids(ids: list[str]) -> set[str]:
                listed = ", ".join(f"'{x}'" for x in ids)
                return {r["id"] for r in await sql(f"SELECT id FROM probe WHERE id IN ({listed})")}

            expected = sum(m.count(b"\n") for m in messages)
            t_start = time.monotonic()
            visible: dict[str, float] = {}

            async def watch_load() -> None:
                """When every load row is queryable (probe rows are in another table)."""
                while time.monotonic() - t_start < duration + 600:
                    visible["rows"] = await count("SELECT count(*) AS n FROM cpu")
                    if visible["rows"] >= expected:
                        visible["at"] = time.monotonic()
                        return
                    await asyncio.sleep(1.0)

            watcher = asyncio.create_task(watch_load())
            load_task = asyncio.create_task(_pace(messages, rate, send_load))
            query_s: list[float] = []
            samples = await _probes(duration, probe_every, poll, send_probe, visible_ids,
                                    query_s)
            sent, load_s = await load_task
            await asyncio.gather(*pending)
            await watcher
            load_end = t_start + load_s
    finally:
        await producer.stop()
    all_visible = visible.get("at")
    return summarise(samples, sent, load_s, len(messages), {
        "load_rows": expected, "load_rows_visible": visible.get("rows", 0),
        "poll_query_p50_s": percentile(sorted(query_s), 0.5) if query_s else None,
        "poll_query_p99_s": percentile(sorted(query_s), 0.99) if query_s else None,
        "all_load_visible_after_load_end_s": None if all_visible is None else all_visible - load_end,
        "ingested_lines_per_s": None if all_visible is None else expected / (all_visible - t_start),
    })


async def peer_freshness(peer: Peer, db: str, messages: Sequence[bytes], rate: float,
                         duration: float, probe_every: float, poll: float = 0.02) -> dict:
    peer.create_database(db)
    base = peer.url
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=120) as client:
        inflight = asyncio.Semaphore(16)
        writes: list[asyncio.Task] = []

        async def post(body: bytes) -> None:
            async with inflight:
                resp = await client.post(f"{base}/write", params={"db": db}, content=body)
                if resp.status_code != 204:
                    errors.append(f"{resp.status_code}: {resp.text[:200]}")

        async def send_load(m: bytes) -> None:
            writes.append(asyncio.create_task(post(m)))

        async def send_probe(i: int, pid: str) -> None:
            resp = await client.post(f"{base}/write", params={"db": db}, content=_probe_line(pid))
            if resp.status_code != 204:
                errors.append(f"probe {resp.status_code}: {resp.text[:200]}")

        async def visible_ids(ids: list[str]) -> set[str]:
            where = " OR ".join(f"id = '{x}'" for x in ids)
            r = await client.get(f"{base}/query",
                                 params={"db": db, "q": f"SELECT v, id FROM probe WHERE {where}"})
            series = r.json()["results"][0].get("series") or []
            return {row[2] for s in series for row in s["values"]}

        load_task = asyncio.create_task(_pace(messages, rate, send_load))
        samples = await _probes(duration, probe_every, poll, send_probe, visible_ids)
        sent, load_s = await load_task
        await asyncio.gather(*writes)
    if errors:
        raise RuntimeError(f"peer writes failed: {errors[:3]}")
    return summarise(samples, sent, load_s, len(messages), {})


def measure(settings: Settings, peer: Peer, rate: float, lines: int, duration: float,
            probe_every: float, db: str = "fresh") -> dict:
    """Both systems, one after the other, each on the same freshly generated load."""
    start_ns = (time.time_ns() // 10_000_000_000) * 10_000_000_000 - 3_600_000_000_000
    messages = load_messages(rate, lines, duration, start_ns)
    out = {"rate_msgs_per_s": rate, "lines_per_msg": lines, "duration_s": duration,
           "probe_every_s": probe_every}
    out["influent"] = asyncio.run(influent_freshness(settings, db, messages, rate, duration,
                                                     probe_every))
    out["peer"] = asyncio.run(peer_freshness(peer, db, messages, rate, duration, probe_every))
    return out
