"""Property: what a write is told was written is exactly what becomes queryable.

Random line protocol bodies (valid lines with escapes and newlines inside strings, invalid
lines, reserved names, type conflicts within the body and with the catalog, comments, blank
lines) are written over HTTP with
``accept_partial=true`` and produced as-is to ``influent.writes``. For each body:

* the rows of the lines HTTP did not report as rejected are exactly the rows a query returns;
* through Kafka, the same rows become queryable and the same lines are rejected.
"""
from __future__ import annotations

import asyncio
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.engine_harness import call, engine_stack
from tests.harness import produce, read_topic, sql, wait_for
from topics.line_protocol import parse_lp_records, serialize_point
from topics.wire import RejectedLine

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000_000

MEASUREMENTS = ["m", "n x", "o,p"]
TAG_KEYS = ["t", "u k"]
TEXT = st.text(alphabet=list('ab ,="\\\né'), min_size=1, max_size=8)
TAG_VALUE = TEXT.filter(lambda v: "\n" not in v and not v.endswith("\\"))
FIELD = st.one_of(
    st.tuples(st.just("v"), st.floats(allow_nan=False, allow_infinity=False, width=32)),
    st.tuples(st.just("i"), st.integers(-10**6, 10**6)),
    st.tuples(st.just("s"), TEXT),
    st.tuples(st.just("b"), st.booleans()),
    st.tuples(st.just("v"), st.integers(0, 9)),  # an int where v is usually a float: a conflict
)
BAD_LINES = st.sampled_from([
    "m,t=a v= 1", "m v=1x", "m,t=a", "garbage", "m __influent_ts=1i,v=1", "m time=1",
    'm s="unterminated', "m,t=a v=1 notatime", "# a comment", "", "   ",
])


@st.composite
def good_line(draw) -> str:
    tags = draw(st.dictionaries(st.sampled_from(TAG_KEYS), TAG_VALUE, max_size=2))
    fields = dict(draw(st.lists(FIELD, min_size=1, max_size=3)))
    return serialize_point(draw(st.sampled_from(MEASUREMENTS)), tags, fields)


@st.composite
def bodies(draw) -> bytes:
    lines = draw(st.lists(st.one_of(good_line(), good_line(), BAD_LINES), min_size=1, max_size=8))
    # a unique timestamp per line, so no two rows share a series and time (no dedup merges)
    stamped = [f"{line} {T0 + n}" if line and not line.startswith(("#", " ", "garbage")) else line
               for n, line in enumerate(lines)]
    return "\n".join(stamped).encode()


def expected_rows(body: bytes, rejected: set[int]) -> set[tuple]:
    rows = set()
    for record in parse_lp_records(body):
        if "error" in record or record["line"] in rejected:
            continue
        values = {**record["tags"], **{k: f["value"] for k, f in record["fields"].items()}}
        rows.add((record["measurement"], record["timestamp"], frozenset(values.items())))
    return rows


def queried_rows(settings, db: str, tables: set[str]) -> set[tuple] | None:
    rows = set()
    for table in tables:
        resp = sql(settings, db, f'SELECT * FROM "{table}"', fmt="parquet")
        if resp.status_code != 200:
            return None
        if not resp.content:
            continue
        data = pq.read_table(pa.BufferReader(resp.content))
        data = data.set_column(data.column_names.index("time"), "time",
                               data.column("time").cast(pa.int64()))
        for row in data.to_pylist():
            ns = row.pop("time")
            rows.add((table, ns, frozenset((k, v) for k, v in row.items() if v is not None)))
    return rows


def rejected_lines(settings, db: str) -> list[int]:
    records = asyncio.run(read_topic(settings, settings.rejected_topic))
    return sorted(r.line for r in map(lambda rec: RejectedLine.from_json(rec.value), records)
                  if r.database == db)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    yield from engine_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("consistency"),
                            "wc")


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies())
def test_http_and_kafka_write_exactly_what_they_report(stack, body):
    db, dbk = f"h{uuid.uuid4().hex[:10]}", f"k{uuid.uuid4().hex[:10]}"
    for name in (db, dbk):  # the catalog fixes m.i as a float: integer i in m is a conflict
        created = call(stack, "POST", "/api/v3/configure/table", json={
            "db": name, "table": "m", "tags": [], "fields": [{"name": "i", "type": "float64"}]})
        assert created.status_code == 200, created.text
    resp = call(stack, "POST", "/api/v3/write_lp", params={"db": db, "precision": "ns"},
                content=body)
    if resp.status_code == 204:
        reported: set[int] = set()
    else:
        assert resp.status_code == 400, resp.text
        data = resp.json().get("data")
        if data is None:  # nothing to write at all: blank lines and comments only
            assert resp.json()["error"] == "incoming write was empty"
            return
        reported = {e["line_number"] for e in data}
    want = expected_rows(body, reported)
    tables = {t for t, _, _ in want}
    wait_for(lambda: queried_rows(stack, db, tables) == want, timeout=30,
             what=f"HTTP rows of {body!r}")

    asyncio.run(produce(stack, [body], dbk, headers=[("precision", b"ns")]))
    wait_for(lambda: rejected_lines(stack, dbk) == sorted(reported), timeout=30,
             what=f"Kafka rejections {sorted(reported)} of {body!r}")
    wait_for(lambda: queried_rows(stack, dbk, tables) == want, timeout=30,
             what=f"Kafka rows of {body!r}")
