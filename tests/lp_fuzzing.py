"""Line protocol fuzzing through both ingest paths: hypothesis-generated and mutated bodies
(random bytes, grammar noise, broken escapes, huge numbers, bad UTF-8, giant lines) written
through HTTP (``/api/v3/write_lp``) and produced to the writes topic, each to a fresh database.

Every body holds a few well-formed *sentinel* lines (table ``sentinel``, one row each) among the
fuzzed ones, so that what must be kept is known. The checks (:func:`check_bodies`):

- HTTP answers 204, or 400 naming each rejected line (its number, a reason), never a sentinel's;
- the worker sends the rejected lines of each Kafka message to ``influent.rejected`` with a reason:
  the same line numbers the HTTP answer named for the same body (one admission code);
- both databases hold the same rows per table, with every sentinel no fuzzed line before it
  could swallow (an open quote carries a line on past its newline);
- the worker is alive afterwards (checked by the caller).
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaProducer
from hypothesis import strategies as st

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES
from tests.harness import read_topic, wait_for
from topics.wire import RejectedLine

# Characters that matter to the grammar, plus a few ordinary and non-ASCII ones.
LP_ALPHABET = list('ab =,"\\\n\t\r#0123456789.-+eEiutTfF\x00\x1fé') + ["\ufeff"]
TEMPLATES = [b'fz,host=a v=1.5', b'fz,host=a\\ b,rack=r\\,1 v=2i,s="x\\"y" 1700000000000000000',
             b'fz v=true,u=3u 1700000000000000000', b'fz\\ z,t=1 f="a\\\\" 1700000001000000000']
HUGE = [b'fz v=1e999', b'fz v=99999999999999999999i', b'fz v=-9223372036854775809i',
        b'fz v=18446744073709551616u', b'fz v=1 99999999999999999999', b'fz v=1 -99999999999999999999',
        b'fz v=NaN', b'fz v=-inf', b'fz v=1.5e308 1', b'fz v=1 1.5']


def _mutate(line: bytes, at: int, op: str, byte: int) -> bytes:
    at %= len(line) + 1
    if op == "insert":
        return line[:at] + bytes([byte]) + line[at:]
    if op == "delete":
        return line[:at] + line[at + 1:]
    return line[:at] + bytes([byte]) + line[at + 1:]


def _giant(kind: int, size: int) -> bytes:
    filler = b"x" * size
    return [b'fz v="' + filler + b'"', b"fz,t=" + filler + b" v=1", b"fz " + filler + b"=1",
            filler + b" v=1"][kind]


fuzzed_lines = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=LP_ALPHABET, max_size=80).map(lambda s: s.encode()),
    st.builds(_mutate, st.sampled_from(TEMPLATES), st.integers(0, 200),
              st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 255)),
    st.sampled_from(TEMPLATES).map(lambda t: t + b"\\"),  # an escape with nothing after it
    st.sampled_from(HUGE),
    st.sampled_from(TEMPLATES).map(lambda t: t.replace(b"host", b"h\xff\xfe")),  # bad UTF-8
    st.builds(_giant, st.integers(0, 3), st.sampled_from([70_000, 300_000])),
)


@dataclass(frozen=True)
class Api:
    """The API process to write and query through, and the token it needs (if any)."""

    settings: Settings
    token: str | None = None

    @property
    def url(self) -> str:
        return self.settings.http_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class Body:
    """One generated body: its lines, which of them (1-based line numbers) are sentinels, and
    how many sentinels no fuzzed line before them can swallow (an open quote or a trailing
    backslash carries a line on past its newline, as in InfluxDB)."""

    data: bytes
    sentinels: list[int]
    kept: int


@st.composite
def bodies(draw, max_lines: int = 12) -> Body:
    """Fuzzed lines with 1-3 sentinel lines at random places; line numbers are counted as the
    parser counts them (a fuzzed line may hold newlines of its own)."""
    lines = draw(st.lists(fuzzed_lines, min_size=1, max_size=max_lines))
    count = draw(st.integers(1, 3))
    for n in range(count):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, None)  # placeholder, filled below
    parts, sentinels, number, kept, clear = [], [], 1, 0, True
    for n, line in enumerate(lines):
        if line is None:
            sentinels.append(number)
            kept += clear
            line = f"sentinel,k=s{n} v={n}i {1_700_000_000_000_000_000 + n}".encode()
        else:
            clear = clear and b'"' not in line and b"\\" not in line
        parts.append(line)
        number += line.count(b"\n") + 1
    return Body(b"\n".join(parts), sentinels, kept)


@dataclass
class Outcome:
    """What the HTTP path answered for one body, and where its Kafka copy went."""

    body: Body
    http_db: str
    kafka_db: str
    status: int
    rejected_lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    offset: int = -1


def write_http(api: Api, body: Body, db: str) -> Outcome:
    resp = httpx.post(f"{api.url}/api/v3/write_lp", params={"db": db, "precision": "ns"},
                      content=body.data, headers=api.headers, timeout=60)
    outcome = Outcome(body, db, "", resp.status_code)
    if resp.status_code == 400:
        data = resp.json().get("data") or []
        items = data if isinstance(data, list) else [data]
        outcome.rejected_lines = [item["line_number"] for item in items]
        outcome.reasons = [item["error_message"] for item in items]
    return outcome


async def produce_all(settings: Settings, outcomes: list[Outcome]) -> None:
    """Each body as one message on partition 0 of the writes topic (headers as the API's)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for outcome in outcomes:
            sent = await producer.send(settings.writes_topic, outcome.body.data, partition=0,
                                       headers=[("db", outcome.kafka_db.encode()),
                                                ("content-type", b"text/plain")])
            outcome.offset = (await sent).offset
    finally:
        await producer.stop()


def check_http_answers(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        assert o.status in (204, 400), (o.status, o.body.data[:300])
        if o.status == 400:
            assert o.rejected_lines, f"a 400 that names no line for {o.body.data[:300]!r}"
            assert all(o.reasons), o.reasons
        lines = o.body.data.count(b"\n") + 1
        assert all(1 <= n <= lines for n in o.rejected_lines), (o.rejected_lines, lines)
        assert not set(o.rejected_lines) & set(o.body.sentinels), (o.rejected_lines, o.body)


def check_kafka_rejects(settings: Settings, outcomes: list[Outcome]) -> None:
    """The rejected topic names, per Kafka message, the lines HTTP named for the same body."""
    expected = sum(len(o.rejected_lines) for o in outcomes)
    by_db = {o.kafka_db: o for o in outcomes}
    seen: dict[str, list[int]] = defaultdict(list)

    def collected() -> bool:
        seen.clear()
        records = asyncio.run(read_topic(settings, settings.rejected_topic, timeout=10))
        for record in records:
            line = RejectedLine.from_json(record.value)
            if line.database in by_db and line.topic == settings.writes_topic:
                assert line.reason, line
                assert line.offset == by_db[line.database].offset, line
                seen[line.database].append(line.line)
        return sum(len(v) for v in seen.values()) >= expected

    wait_for(collected, 120, 1.0, "the Kafka path's rejected lines")
    for db, outcome in by_db.items():
        assert sorted(seen.get(db, [])) == sorted(outcome.rejected_lines), (db, outcome.body.data[:300])


def tables(api: Api, db: str) -> set[str]:
    resp = httpx.get(f"{api.url}/api/v3/configure/table", params={"db": db}, headers=api.headers,
                     timeout=60)
    return {t["table_name"] for t in resp.json()} if resp.status_code == 200 else set()


def table_rows(api: Api, db: str) -> dict[str, int]:
    """Rows per table of a database (an empty dict until it exists)."""
    out = {}
    for table in tables(api, db):
        quoted = table.replace('"', '""')
        resp = httpx.get(f"{api.url}/api/v3/query_sql", headers=api.headers, timeout=60,
                         params={"db": db, "q": f'SELECT count(*) AS n FROM "{quoted}"'})
        assert resp.status_code == 200, (db, table, resp.text)
        out[table] = json.loads(resp.content)[0]["n"]
    return out


async def produce_barrier(settings: Settings, db: str) -> None:
    """One line after the fuzzed messages on partition 0: once it is visible, they are too."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await (await producer.send(settings.writes_topic, b"barrier v=1i 1700000000000000000",
                                   partition=0, headers=[("db", db.encode())]))
    finally:
        await producer.stop()


def check_rows(api: Api, outcomes: list[Outcome], barrier_db: str) -> None:
    """Once the barrier is visible (every Kafka message ingested): each Kafka database keeps
    the sentinels nothing could swallow, and its HTTP twin comes to hold the same rows per
    table (both paths accept the same lines)."""
    asyncio.run(produce_barrier(api.settings, barrier_db))
    wait_for(lambda: table_rows(api, barrier_db).get("barrier") == 1, 180, what="the barrier row")
    for o in outcomes:
        final = table_rows(api, o.kafka_db)
        assert final.get("sentinel", 0) >= o.body.kept, (final, o.body)
        wait_for(lambda: table_rows(api, o.http_db) == final, 120,
                 what=f"{o.http_db} to hold the rows of {o.kafka_db}: {final}")


def fuzz_both_paths(api: Api, generated: list[Body]) -> list[Outcome]:
    """Write each body through HTTP and Kafka (fresh databases), then run every check."""
    settings = api.settings
    tag = uuid.uuid4().hex[:6]
    outcomes = []
    for n, body in enumerate(generated):
        outcome = write_http(api, body, f"lph_{tag}_{n}")
        outcome.kafka_db = f"lpk_{tag}_{n}"
        outcomes.append(outcome)
    check_http_answers(outcomes)
    asyncio.run(produce_all(settings, outcomes))
    check_kafka_rejects(settings, outcomes)
    check_rows(api, outcomes, f"lpb_{tag}")
    return outcomes


def describe(outcomes: list[Outcome]) -> str:
    return json.dumps({"bodies": len(outcomes),
                       "rejected_lines": sum(len(o.rejected_lines) for o in outcomes),
                       "sentinels": sum(len(o.body.sentinels) for o in outcomes)})
