"""The write admission (persist/admission.py) against a real Redis catalog: one verdict for
HTTP, Kafka and trigger writes, and exact byte spans for the accepted lines."""
from __future__ import annotations

import asyncio
import gzip
import uuid

import pytest

from persist.admission import (V1_PRECISIONS, V3_PRECISIONS, BodyTooLarge, UndecodableBody,
                               WriteRequest, admit, database_name_error, decode_body,
                               precision_error, v1_database)
from persist.catalog import Catalog
from topics.line_protocol import parse_lp


def test_decode_body_bounds_what_gzip_inflates_to():
    assert decode_body(gzip.compress(b"cpu v=1"), "gzip", 100) == b"cpu v=1"
    assert decode_body(b"cpu v=1", None, 100) == b"cpu v=1"
    with pytest.raises(BodyTooLarge):
        decode_body(gzip.compress(b"x" * 10_000_000), "gzip", 1000)
    with pytest.raises(BodyTooLarge):
        decode_body(b"x" * 101, "identity", 100)
    with pytest.raises(UndecodableBody):
        decode_body(b"abc", "br", 100)
    with pytest.raises(UndecodableBody):
        decode_body(b"not gzip", "gzip", 100)
    with pytest.raises(UndecodableBody, match="truncated"):
        decode_body(gzip.compress(b"cpu v=1" * 100)[:20], "gzip", 10_000)


def test_database_names_precisions_and_the_v1_mapping():
    assert v1_database("x", "weekly") == "x/weekly"
    assert v1_database("x", "autogen") == v1_database("x", None) == v1_database("x", "") == "x"
    assert database_name_error("x/weekly") is None
    assert database_name_error("x/bad rp") and database_name_error("x/") and database_name_error("/x")
    assert database_name_error("a/b/c")  # one retention policy at most
    assert precision_error("h", V1_PRECISIONS) is None and precision_error("m", V1_PRECISIONS) is None
    assert precision_error("h", V3_PRECISIONS) and precision_error("auto", V1_PRECISIONS)
    assert precision_error("minute") is None and precision_error("fortnight")


@pytest.fixture
def catalog(redis_url):
    cat = Catalog.connect(redis_url, f"adm{uuid.uuid4().hex[:8]}")
    yield cat
    asyncio.run(cat.close())


def run(catalog: Catalog, *requests: WriteRequest):
    async def go():
        try:
            return await admit(list(requests), catalog)
        finally:
            await catalog.redis.connection_pool.disconnect()
    return asyncio.run(go())


def test_partial_body_is_the_exact_text_of_the_accepted_lines(catalog):
    body = (b'm,t=a s="line one\nline two" 1700000000000000000\n'
            b'm,t=b v= 1700000000000000001\n'
            b'm,t=c v=3 1700000000000000002\n'
            b'm,t=d __influent_ts=1i,v=4 1700000000000000003')
    [adm] = run(catalog, WriteRequest(body, "db1"))
    assert [(e.line, "reserved" in e.reason) for e in adm.rejected] == [(3, False), (5, True)]
    assert adm.accepted_lines == [1, 4]
    assert adm.accepted_body() == (b'm,t=a s="line one\nline two" 1700000000000000000\n'
                                   b'm,t=c v=3 1700000000000000002')
    again = parse_lp(adm.accepted_body())
    assert not again.errors and again.points == 2


def test_one_catalog_round_trip_decides_a_batch_first_writer_wins(catalog):
    first = WriteRequest(b"m v=1i 1", "db1")
    second = WriteRequest(b"m v=1.5 2\nm w=1 3", "db1")
    other = WriteRequest(b"m v=true 1", "db2")
    a, b, c = run(catalog, first, second, other)
    assert a.rows == 1 and not a.rejected
    assert [e.line for e in b.rejected] == [1] and "expected integer" in b.rejected[0].reason
    assert b.rows == 1 and c.rows == 1


def test_joined_writes_keep_their_own_default_times_and_lines(catalog):
    """A batch of messages is parsed as one body, but a line without a timestamp takes its own
    write's default time (cut to the precision) and every line still names its write."""
    writes = [WriteRequest(b"m,t=a v=1i\nm,t=b v=2i", "db1", default_time_ns=5_000_000_123),
              WriteRequest(b"m,t=c v=3i 7", "db1", default_time_ns=9_000_000_000),
              WriteRequest(b"m,t=d v=oops", "db1", default_time_ns=11_000_000_000),
              WriteRequest(b"m,t=e v=5i", "db1", precision="s", default_time_ns=13_000_000_999)]
    async def go():
        try:
            return await admit(writes, catalog, join=True)
        finally:
            await catalog.redis.connection_pool.disconnect()
    joined, seconds = asyncio.run(go())
    assert joined.members == [0, 1, 2] and seconds.members == [3]
    [table] = joined.tables
    times = table.batch.column("time").cast(pa.int64()).to_pylist()
    assert times == [5_000_000_123, 5_000_000_123, 7]
    assert [joined.locate(e.line) for e in joined.rejected] == [(2, 1)]
    assert seconds.tables[0].batch.column("time").cast(pa.int64()).to_pylist() == [13_000_000_000]


def test_refusals_name_their_reason(catalog):
    bomb = gzip.compress(b"m v=1 1\n" * 200_000)
    too_big, bad_db, bad_precision, empty = run(
        catalog, WriteRequest(bomb, "db1", content_encoding="gzip", max_body_bytes=1024),
        WriteRequest(b"m v=1", "bad name"), WriteRequest(b"m v=1", "db1", precision="fortnight"),
        WriteRequest(b"\n# only a comment\n", "db1"))
    assert too_big.refusal.too_large and "exceeds the limit of 1024" in too_big.refusal.reason
    assert "invalid character" in bad_db.refusal.reason
    assert "invalid precision" in bad_precision.refusal.reason
    assert empty.empty and empty.refusal is None


def test_an_all_or_nothing_write_with_a_bad_line_claims_no_column(catalog):
    [adm] = run(catalog, WriteRequest(b"fresh v=1 1\nfresh w= 2", "db3", all_or_nothing=True))
    assert [e.line for e in adm.rejected] == [2]

    async def columns():
        try:
            return (await catalog.table_schema("db3", "fresh")).columns
        finally:
            await catalog.redis.connection_pool.disconnect()
    assert asyncio.run(columns()) == {}


def test_telegraf_json_is_rendered_then_admitted_as_line_protocol(catalog):
    doc = (b'{"metrics": [{"name": "m", "tags": {"h": "a"}, "fields": {"v": 1}, "timestamp": 5},'
           b' {"name": "m", "fields": {"__influent_ts": 1}, "timestamp": 6}]}')
    sniffed, forced, plain, broken = run(
        catalog, WriteRequest(doc, "dbj", body_format="sniff", precision_given=False),
        WriteRequest(doc, "dbj", body_format="json", precision="s"),
        WriteRequest(doc, "dbj", body_format="sniff", content_type="text/plain"),
        WriteRequest(b"{oops", "dbj", body_format="sniff"))
    assert sniffed.precision == "ns" and sniffed.rows == 1
    assert sniffed.tables[0].batch.column("time").cast("int64").to_pylist() == [5_000_000_000]
    assert [e.line for e in sniffed.rejected] == [2]
    assert sniffed.rejected[0].reason.startswith("metrics[1]: ")
    assert forced.rows == 1 and forced.accepted_body() == b"m,h=a v=1.0 5000000000"
    assert plain.refusal is None and not plain.tables  # line protocol, which it is not
    assert broken.refusal.invalid_document


# ---- property: the accepted body holds exactly the accepted rows ---------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
import pyarrow as pa  # noqa: E402

from persist.admission import Admission  # noqa: E402
from topics.line_protocol import ParsedTable, parse_lp_records  # noqa: E402

LP_ALPHABET = list('ab =,"\\\n\r#0123456789.-iutf') + ["é"]
VALID = ['m,t=a v=1 1', 'm s="x\ny" 2', 'n\\ x,t=a\\,b i=3i 3', 'm,t=b b=true 4']


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(VALID), st.text(alphabet=LP_ALPHABET, max_size=30)),
                min_size=1, max_size=20), st.data(), st.booleans())
def test_accepted_body_reparses_to_exactly_the_accepted_rows(lines, data, vectorise):
    body = "\n".join(lines).encode()
    result = parse_lp(body, default_time=0, _vectorise=vectorise)
    valid = sorted(n for t in result.tables.values() for n in t.lines.to_pylist())
    dropped = set(data.draw(st.lists(st.sampled_from(valid), unique=True))) if valid else set()
    tables = []
    for t in result.tables.values():  # rows the catalog would have rejected
        keep = pa.array([n not in dropped for n in t.lines.to_pylist()])
        tables.append(ParsedTable(t.name, t.batch.filter(keep), t.tags, t.fields, t.lines.filter(keep)))
    admission = Admission(WriteRequest(body, "db"), body, tables, list(result.errors))
    if dropped:
        admission.rejected.append(None)  # anything rejected: the body is cut to the kept lines

    def rows(records):
        return [{k: v for k, v in r.items() if k != "line"} for r in records if "error" not in r]

    kept = [r for r in parse_lp_records(body, default_time=0) if r["line"] not in dropped]
    again = parse_lp_records(admission.accepted_body(), default_time=0)
    assert not [r for r in again if "error" in r]
    assert rows(again) == rows(kept)
