"""The soak's load: Kafka and HTTP writers that remember every row they got acknowledged (the
ledger the end checks compare against), a query load, and a freshness probe.

Rows are ``m,s=<series> v=<write id>i <time>``: every new row has a (series, time) key of its
own; an overwrite reuses an acknowledged key with a new write id, and is only sent once the
previous write of that key was acknowledged (so "last written" is well defined); deliberate
bad lines carry a unique token. A write that fails (broker down, API killed) is sent again, the
same bytes, until acknowledged: duplicates on the topic are expected, the (series, time) dedup
must hide them.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaProducer

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES

#: the broker going away is the point of the soak: aiokafka's reconnect errors are noise here
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

TABLE = "m"
PROBE_DB = "soakprobe"
SERIES = 200
#: the times of every row: far enough in the past to be one partition key, unique per row
BASE_NS = (int(time.time()) // 86400 - 1) * 86400 * 10**9


@dataclass(frozen=True)
class Line:
    db: str
    series: str
    time: int
    value: int

    def text(self) -> str:
        return f"{TABLE},s={self.series} v={self.value}i {self.time}"


@dataclass
class Ledger:
    """What was acknowledged: the last value of every key, every (key, value) pair, the bad
    lines; and the keys free to be overwritten."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    last: dict[tuple[str, str, int], int] = field(default_factory=dict)
    pairs: dict[str, set[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(set))
    bad: list[tuple[str, str]] = field(default_factory=list)
    free: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    #: the values of each overwritten key, in the order they were acknowledged (diagnosis)
    history: dict[tuple[str, str, int], list[tuple[int, float, str]]] = field(default_factory=dict)
    next_row: int = 0
    next_value: int = 0
    overwrites: int = 0
    sent_lines: int = 0

    def compose(self, db: str, n: int, rng: random.Random, overwrite_p: float,
                bad_p: float) -> tuple[list[Line], list[str]]:
        """``n`` lines for ``db``: new keys, some overwrites of free keys, maybe bad lines."""
        good: list[Line] = []
        bad: list[str] = []
        with self.lock:
            for _ in range(n):
                self.next_value += 1
                if rng.random() < bad_p:
                    bad.append(_bad_line(self.next_value, rng))
                    continue
                if self.free[db] and rng.random() < overwrite_p:
                    i = rng.randrange(len(self.free[db]))
                    free = self.free[db]
                    free[i], free[-1] = free[-1], free[i]
                    series, t = free.pop()
                    self.overwrites += 1
                else:
                    self.next_row += 1
                    series, t = f"s{self.next_row % SERIES}", BASE_NS + self.next_row * 1000
                good.append(Line(db, series, t, self.next_value))
        return good, bad

    def acknowledged(self, good: list[Line], bad: list[str], db: str, via: str = "") -> None:
        now = time.time()
        with self.lock:
            for line in good:
                key = (line.db, line.series, line.time)
                if key in self.last:
                    self.history.setdefault(key, [(self.last[key], 0.0, "")])
                    self.history[key].append((line.value, now, via))
                self.last[key] = line.value
                self.pairs[line.db].add((line.series, line.time, line.value))
                self.free[line.db].append((line.series, line.time))
            self.bad.extend((db, b) for b in bad)
            self.sent_lines += len(good) + len(bad)


def _bad_line(token: int, rng: random.Random) -> str:
    if rng.random() < 0.5:  # not line protocol: an unquoted word as a field value
        return f"{TABLE},s=bad{token} v=zz{token} {BASE_NS + token}"
    return f'{TABLE},s=bad{token} v="conflict{token}" {BASE_NS + token}'  # v is an integer


def message_size(rng: random.Random) -> int:
    """Lines in one Kafka message: mostly small, some large, up to 5 000."""
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(1, 50)
    if roll < 0.9:
        return rng.randint(50, 1000)
    return rng.randint(1000, 5000)


@dataclass
class LoadStats:
    kafka_messages: int = 0
    http_requests: int = 0
    write_retries: int = 0
    queries_ok: int = 0
    queries_failed: int = 0
    query_failures_at: list[float] = field(default_factory=list)


class Load:
    """The writer, query and probe threads, started and stopped together."""

    def __init__(self, settings: Settings, dbs: list[str], rate: float, seed: int = 1):
        self.settings = settings
        self.dbs = dbs
        self.rate = rate  # lines per second over both writers
        self.ledger = Ledger()
        self.stats = LoadStats()
        self.stop_event = threading.Event()
        self.probes: list[dict] = []
        self.seed = seed
        self.threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in (
            ("soak-kafka", self._run_kafka), ("soak-http", self._run_http),
            ("soak-queries", self._run_queries), ("soak-probe", self._run_probe))]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, timeout: float = 600) -> None:
        """Stop sending; wait for the writes in flight to be acknowledged."""
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)

    # ---- Kafka writer --------------------------------------------------------------------
    def _run_kafka(self) -> None:
        asyncio.run(self._kafka_loop(random.Random(self.seed)))

    async def _kafka_loop(self, rng: random.Random) -> None:
        producer = await start_producer(self.settings)
        started, lines = time.monotonic(), 0
        try:
            while not self.stop_event.is_set():
                db = rng.choice(self.dbs)
                good, bad = self.ledger.compose(db, message_size(rng), rng, 0.05, 0.002)
                body = "\n".join([g.text() for g in good] + bad).encode()
                producer = await self.send_until_acked(producer, body, db)
                self.ledger.acknowledged(good, bad, db, "kafka")
                self.stats.kafka_messages += 1
                lines += len(good) + len(bad)
                await asyncio.sleep(max(0.0, lines / (self.rate * 0.7)
                                        - (time.monotonic() - started)))
        finally:
            await producer.stop()

    async def send_until_acked(self, producer: AIOKafkaProducer, body: bytes,
                               db: str) -> AIOKafkaProducer:
        headers = [("db", db.encode()), ("precision", b"ns")]
        while True:
            try:
                await asyncio.wait_for(
                    await producer.send(self.settings.writes_topic, body, headers=headers), 60)
                return producer
            except Exception:  # noqa: BLE001 - broker away: send the same bytes again
                self.stats.write_retries += 1
                await producer.stop()
                await asyncio.sleep(0.5)
                producer = await start_producer(self.settings)

    # ---- HTTP writer ---------------------------------------------------------------------
    def _run_http(self) -> None:
        rng = random.Random(self.seed + 1)
        started, lines = time.monotonic(), 0
        with httpx.Client(timeout=60) as client:
            while not self.stop_event.is_set():
                db = rng.choice(self.dbs)
                good, bad = self.ledger.compose(db, rng.randint(1, 500), rng, 0.05, 0.002)
                body = "\n".join([g.text() for g in good] + bad)
                self._post_until_answered(client, db, body, bool(bad))
                self.ledger.acknowledged(good, bad, db, "http")
                self.stats.http_requests += 1
                lines += len(good) + len(bad)
                time.sleep(max(0.0, lines / (self.rate * 0.3) - (time.monotonic() - started)))

    def _post_until_answered(self, client: httpx.Client, db: str, body: str,
                             has_bad: bool) -> None:
        url = f"{self.settings.http_url}/api/v3/write_lp"
        while True:
            try:
                resp = client.post(url, params={"db": db, "precision": "ns"}, content=body)
                if resp.status_code == 204 or (has_bad and resp.status_code == 400):
                    return  # a partial write: the good lines are written, the bad rejected
                if resp.status_code == 400:
                    raise RuntimeError(f"write refused: {resp.text[:500]}")
            except httpx.HTTPError:
                pass  # API killed or restarting: send again
            self.stats.write_retries += 1
            time.sleep(0.5)

    # ---- queries -------------------------------------------------------------------------
    def _run_queries(self) -> None:
        rng = random.Random(self.seed + 2)
        with httpx.Client(timeout=60) as client:
            while not self.stop_event.is_set():
                db = rng.choice(self.dbs)
                q = rng.choice([f"SELECT count(*) AS n FROM {TABLE}",
                                f"SELECT * FROM {TABLE} WHERE s = 's{rng.randrange(SERIES)}' "
                                f"ORDER BY time DESC LIMIT 10",
                                f"SELECT s, max(v) AS v FROM {TABLE} GROUP BY s"])
                try:
                    ok = client.get(f"{self.settings.http_url}/api/v3/query_sql",
                                    params={"db": db, "q": q}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.stats.queries_ok += 1
                else:
                    self.stats.queries_failed += 1
                    self.stats.query_failures_at.append(time.time())
                self.stop_event.wait(0.3)

    # ---- freshness -----------------------------------------------------------------------
    def _run_probe(self) -> None:
        asyncio.run(self._probe_loop())

    async def _probe_loop(self) -> None:
        producer = await start_producer(self.settings)
        try:
            while not self.stop_event.is_set():
                sent_at = time.time()
                producer, seen = await self.probe_once(producer, self.stop_event.is_set)
                if seen:
                    self.probes.append({"sent_at": sent_at, "seconds": time.time() - sent_at})
                await asyncio.sleep(1.0)
        finally:
            await producer.stop()

    async def probe_once(self, producer: AIOKafkaProducer,
                         give_up=lambda: False) -> tuple[AIOKafkaProducer, bool]:
        """Write one probe row through Kafka and wait until a query returns it (or
        ``give_up()``); returns the producer to go on with and whether the row was seen."""
        good, _ = self.ledger.compose(PROBE_DB, 1, random.Random(), 0.0, 0.0)
        producer = await self.send_until_acked(producer, good[0].text().encode(), PROBE_DB)
        self.ledger.acknowledged(good, [], PROBE_DB)
        q = f"SELECT v FROM {TABLE} WHERE s = '{good[0].series}' AND v = {good[0].value}"
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                try:
                    resp = await client.get(f"{self.settings.http_url}/api/v3/query_sql",
                                            params={"db": PROBE_DB, "q": q})
                    if resp.status_code == 200 and resp.json():
                        return producer, True
                except (httpx.HTTPError, ValueError):
                    pass
                if give_up():
                    return producer, False
                await asyncio.sleep(0.2)


async def start_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer (acks=all), retried until the broker answers."""
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                    max_request_size=MAX_MESSAGE_BYTES, linger_ms=5,
                                    request_timeout_ms=20000)
        try:
            await asyncio.wait_for(producer.start(), 30)
            return producer
        except Exception:  # noqa: BLE001 - broker not up yet
            await producer.stop()
            await asyncio.sleep(1.0)


def probe(settings: Settings, load: Load, give_up=lambda: False) -> bool:
    """One probe from the calling thread (the time to recover): whether the row became
    visible before ``give_up()``."""
    async def run() -> bool:
        producer = await start_producer(settings)
        try:
            producer, seen = await load.probe_once(producer, give_up)
        finally:
            await producer.stop()
        return seen
    return asyncio.run(run())
