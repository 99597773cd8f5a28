"""Unit tests of pure logic: dedup, pruning, result formats, Parquet files, write checks."""
from __future__ import annotations

import datafusion
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from persist.policy import PendingBuffer, PersistPolicy
from influent.config import Settings
from persist.catalog import schema_conflicts, validate_db_name
from persist.dedup import _merge, deduplicate
from persist.parquet_files import ParquetFileMeta, build_parquet, file_id, object_path, read_meta
from persist.partitioning import partition_keys, split_by_partition
from query_api.formats import format_timestamps, pick_format, render
from query_api.influxql.conditions import tag_filter
from query_api.influxql.parser import parse_query
from query_api.pruning import TimeRange, plan_scan_limits, plan_time_ranges
from query_api.tag_filter import keep_matching
from persist.admission import BodyTooLarge, decode_body as read_body
from query_api.writes import v3_error_body
from topics.line_protocol import LineError
from topics.wire import ORDER_SEQ, ORDER_TS

NS = pa.timestamp("ns")


def buffered(rows: list[dict]) -> pa.Table:
    schema = pa.schema([("host", pa.string()), ("a", pa.float64()), ("b", pa.int64()),
                        ("time", NS), (ORDER_TS, pa.int64()), (ORDER_SEQ, pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


def test_dedup_keeps_last_non_null_per_field():
    t = buffered([
        {"host": "x", "a": 1.0, "b": None, "time": 1000, ORDER_TS: 1, ORDER_SEQ: 1},
        {"host": "x", "a": None, "b": 7, "time": 1000, ORDER_TS: 2, ORDER_SEQ: 1},
        {"host": "x", "a": 3.0, "b": None, "time": 1000, ORDER_TS: 1, ORDER_SEQ: 2},
        {"host": None, "a": 5.0, "b": None, "time": 1000, ORDER_TS: 1, ORDER_SEQ: 3},
        {"host": "y", "a": 9.0, "b": 1, "time": 1000, ORDER_TS: 0, ORDER_SEQ: 0},
    ])
    got = {r["host"]: (r["a"], r["b"]) for r in deduplicate(t, ["host"]).to_pylist()}
    assert got == {"x": (3.0, 7), None: (5.0, None), "y": (9.0, 1)}


def planner() -> datafusion.SessionContext:
    ctx = datafusion.SessionContext()
    schema = pa.schema([("host", pa.string()), ("dc", pa.string()), ("time", NS), ("v", pa.float64())])
    for name in ("cpu", "mem"):
        ctx.register_record_batches(name, [[pa.RecordBatch.from_pylist([], schema=schema)]])
    return ctx


def ranges(sql: str) -> dict[str, TimeRange]:
    return plan_time_ranges(planner(), sql)


@pytest.mark.parametrize("sql,expected", [
    ("SELECT * FROM cpu WHERE host = 'a'", {"host": {"a"}}),
    ("SELECT * FROM cpu WHERE 'a' = host AND dc IN ('x', 'y')", {"host": {"a"}, "dc": {"x", "y"}}),
    ("SELECT * FROM cpu WHERE (host = 'a' OR host = 'b') AND host IN ('b', 'c')", {"host": {"b"}}),
    ("SELECT * FROM cpu WHERE host = 'a' OR dc = 'x'", {}),  # two columns: nothing to use
    ("SELECT * FROM cpu WHERE host != 'a' AND host LIKE 'a%'", {}),
    ("SELECT * FROM cpu WHERE host = ''", {}),
    ("SELECT v FROM cpu WHERE host = 'a' UNION ALL SELECT v FROM cpu", {}),  # one scan unfiltered
    ("SELECT v FROM cpu WHERE host = 'a' UNION ALL SELECT v FROM cpu WHERE host = 'b'", {"host": {"a", "b"}}),
    ("SELECT * FROM (SELECT dc AS host, v FROM cpu) WHERE host = 'x'", {"dc": {"x"}}),  # renamed: follows the column
])
def test_tag_values_from_the_plan(sql, expected):
    found = plan_scan_limits(planner(), sql).tags["cpu"]
    assert {c: set(v) for c, v in found.items()} == expected


@pytest.mark.parametrize("where,expected", [
    ("host = 'a' AND time > now() - 1h", {"host": {"a"}}),
    ("(host = 'a' OR host = 'b') AND v > 1", {"host": {"a", "b"}}),
    ("host::tag = 'a' AND dc::field = 'x'", {"host": {"a"}}),
    ("host = 'a' OR v > 1", {}),
    ("host = ''", {}),  # InfluxQL: also matches rows without the tag
    ("host =~ /a/", {}),
])
def test_influxql_tag_values(where, expected):
    stmt = parse_query(f"SELECT v FROM cpu WHERE {where}").statements[0]
    assert {c: set(v) for c, v in tag_filter(stmt.condition).items()} == expected


def test_keep_matching_filters_tag_columns_only():
    t = pa.table({"host": pa.array(["a", "b", None, "a"]), "v": pa.array(["a", "a", "a", "x"])})
    assert keep_matching(t, {"host": frozenset({"a"})}, ["host"]).column("v").to_pylist() == ["a", "x"]
    assert keep_matching(t, {"v": frozenset({"x"})}, ["host"]).num_rows == 4  # a field: untouched
    assert keep_matching(t, {"dc": frozenset({"x"})}, ["host", "dc"]).num_rows == 0  # no dc at all
    dictionary = t.set_column(0, "host", t.column("host").dictionary_encode())
    assert keep_matching(dictionary, {"host": frozenset({"b"})}, ["host"]).num_rows == 1


@pytest.mark.parametrize("sql,expected", [
    ("SELECT * FROM cpu", TimeRange()),
    ("SELECT * FROM cpu WHERE time >= '1970-01-01T00:00:01Z'", TimeRange(1_000_000_000, None)),
    ("SELECT * FROM cpu WHERE time > '1970-01-01T00:00:01Z' AND time < '1970-01-01T00:00:02Z' AND host = 'a'",
     TimeRange(1_000_000_001, 1_999_999_999)),
    ("SELECT * FROM cpu WHERE time >= '1970-01-01T00:00:01Z' OR host = 'a'", TimeRange()),
    ("SELECT * FROM cpu WHERE '1970-01-01T00:00:05Z' >= time", TimeRange(None, 5_000_000_000)),
    ("SELECT count(*) FROM cpu WHERE time BETWEEN '1970-01-01T00:00:01Z' AND '1970-01-01T00:00:03Z' GROUP BY host",
     TimeRange(1_000_000_000, 3_000_000_000)),
])
def test_time_ranges_from_the_plan(sql, expected):
    assert ranges(sql)["cpu"] == expected


def test_now_is_folded_into_a_bound():
    rng = ranges("SELECT * FROM cpu WHERE time > now() - interval '1 hour'")["cpu"]
    assert rng.lo is not None and rng.hi is None


def test_a_table_scanned_twice_takes_the_union():
    got = ranges("SELECT * FROM cpu WHERE time > '1970-01-01T00:00:10Z' UNION ALL "
                 "SELECT * FROM cpu WHERE time < '1970-01-01T00:00:01Z'")["cpu"]
    assert got == TimeRange(None, None)


def test_timestamps_render_like_influxdb3():
    arr = pa.array([123, 0, 1_500_000_000, -1, 1_000_001_000], NS)
    assert format_timestamps(arr).to_pylist() == [
        "1970-01-01T00:00:00.000000123", "1970-01-01T00:00:00", "1970-01-01T00:00:01.500",
        "1969-12-31T23:59:59.999999999", "1970-01-01T00:00:01.000001"]


def test_formats():
    t = pa.table({"host": ["a", None], "time": pa.array([123, 0], NS), "val": [1.0, 2.5]})
    assert b"".join(render(t, "json")) == (b'[{"host":"a","time":"1970-01-01T00:00:00.000000123","val":1.0},'
                                           b'{"time":"1970-01-01T00:00:00","val":2.5}]')
    assert b"".join(render(t, "csv")).decode() == "host,time,val\na,1970-01-01T00:00:00.000000123,1.0\n,1970-01-01T00:00:00,2.5\n"
    assert b"".join(render(t, "jsonl")).count(b"\n") == 2
    assert "| host |" in b"".join(render(t, "pretty")).decode()
    assert pq.read_table(pa.BufferReader(b"".join(render(t, "parquet")))).num_rows == 2
    assert pick_format(None, "text/csv") == "csv" and pick_format("json_lines", None) == "jsonl"
    with pytest.raises(ValueError):
        pick_format(None, "application/xml")


def test_parquet_file_is_deduplicated_sorted_and_self_describing():
    t = buffered([
        {"host": "b", "a": 1.0, "b": 1, "time": 2000, ORDER_TS: 1, ORDER_SEQ: 1},
        {"host": "a", "a": 2.0, "b": 2, "time": 3000, ORDER_TS: 1, ORDER_SEQ: 2},
        {"host": "a", "a": 3.0, "b": None, "time": 1000, ORDER_TS: 1, ORDER_SEQ: 3},
        {"host": "a", "a": None, "b": 4, "time": 1000, ORDER_TS: 1, ORDER_SEQ: 4},
    ])
    fid = file_id(3, 10)
    assert fid == file_id(3, 10) and fid != file_id(3, 11) and fid != file_id(4, 10)
    meta = ParquetFileMeta(database="db", table="t", partition_key="1970-01-01",
                           path=object_path("db", "t", "1970-01-01", fid), file_id=fid, size=0, rows=0,
                           min_time=0, max_time=0, source_topic="w", source_partition=3, min_offset=10,
                           max_offset=12, max_write_ts=0, max_write_seq=0,
                           columns={"host": "tag", "a": "float", "b": "integer", "time": "time"})
    data, done = build_parquet(t, ["host"], meta)
    table = pq.read_table(pa.BufferReader(data))
    assert [(r["host"], r["a"], r["b"]) for r in table.to_pylist()] == [("a", 3.0, 4), ("a", 2.0, 2), ("b", 1.0, 1)]
    assert pa.types.is_dictionary(table.schema.field("host").type)
    assert done.rows == 3 and done.min_time == 1000 and done.max_time == 3000 and done.size == len(data)
    assert read_meta(data).path == "db/t/1970-01-01/p0003-00000000000000000010.parquet"
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert md.row_group(0).column(0).statistics is not None
    assert md.row_group(0).column(0).compression == "ZSTD"


def test_partition_keys_by_day():
    b = pa.record_batch({"time": pa.array([0, 86_400 * 10**9, 86_400 * 10**9 + 5], NS)})
    keys = partition_keys(b)
    assert keys.to_pylist() == ["1970-01-01", "1970-01-02", "1970-01-02"]
    assert {k: v.num_rows for k, v in split_by_partition(b, keys).items()} == {"1970-01-01": 1, "1970-01-02": 2}


def test_schema_conflicts_and_names():
    known = {"host": "tag", "v": "float"}
    assert schema_conflicts({"host": "tag", "v": "float", "new": "string"}, known) == {}
    assert "expected float, got integer" in schema_conflicts({"v": "integer"}, known)["v"]
    assert "already a tag" in schema_conflicts({"host": "string"}, known)["host"]
    assert validate_db_name("ok_db-1") is None
    assert validate_db_name("") and validate_db_name("_x") and validate_db_name("a b")


def test_write_body_limits_and_error_shape():
    import gzip
    assert read_body(gzip.compress(b"cpu v=1"), "gzip", 100) == b"cpu v=1"
    with pytest.raises(BodyTooLarge):
        read_body(gzip.compress(b"x" * 1000), "gzip", 100)
    with pytest.raises(ValueError):
        read_body(b"abc", "br", 100)
    err = LineError(line=2, original="cpu,host=a val= 123 and more", reason="No fields were provided")
    assert v3_error_body([err], True) == {"error": "partial write of line protocol occurred", "data": [
        {"error_message": "No fields were provided", "line_number": 2, "original_line": "cpu,host=a val= 123 "}]}
    assert v3_error_body([err], False)["error"] == "line protocol parsing error"


def test_partition_template_with_tags_is_escaped_and_marks_missing_values():
    from persist.partitioning import PartitionTemplate
    b = pa.record_batch({"time": pa.array([0, 3_600 * 10**9, 0], NS),
                         "region": pa.array(["eu|1", None, "us/w"])})
    keys = partition_keys(b, PartitionTemplate("%Y-%m-%dT%H", ("region", "absent")))
    assert keys.to_pylist() == ["1970-01-01T00|eu%7C1|!", "1970-01-01T01|!|!", "1970-01-01T00|us%2Fw|!"]
    assert PartitionTemplate.from_json(PartitionTemplate("%Y", ("a",)).to_json()) == PartitionTemplate("%Y", ("a",))
    with pytest.raises(ValueError):
        PartitionTemplate("%Y/%m")


def test_referenced_tables_are_whole_words():
    from query_api.engine import referenced_tables
    tables = ["f", "m", "cpu", "My Table", "disk"]
    assert referenced_tables("SELECT * FROM m WHERE time > now()", tables) == ["m"]
    assert referenced_tables('SELECT * FROM "My Table" JOIN cpu USING (host)', tables) == ["cpu", "My Table"]
    assert referenced_tables("select * from CPU", tables) == ["cpu"]


def test_pending_buffer_totals_follow_entries_in_and_out():
    buf = PendingBuffer()
    buf.add(b"k1", size=100, rows=10, written_ms=5_000)
    buf.add(b"k2", size=50, rows=5, written_ms=3_000)
    buf.add(b"k1", size=100, rows=10, written_ms=5_000)  # redelivered: counted once
    assert (buf.rows, buf.bytes, buf.oldest_ms) == (15, 150, 3_000)
    buf.remove(b"k2")
    assert (buf.rows, buf.bytes, buf.oldest_ms) == (10, 100, 5_000)
    buf.remove(b"k1")
    assert (buf.rows, buf.bytes, buf.oldest_ms, buf.entries) == (0, 0, 0, {})


def test_a_buffer_is_due_by_rows_bytes_or_age():
    policy = PersistPolicy.from_settings(
        Settings(persist_max_rows=20, persist_max_bytes=1_000, persist_max_age=60))
    buf = PendingBuffer()
    assert policy.due(buf, now_ms=10**9) is None
    buf.add(b"a", size=400, rows=10, written_ms=1_000)
    assert policy.due(buf, now_ms=2_000) is None
    assert policy.due(buf, now_ms=61_000) == "age"
    buf.add(b"b", size=700, rows=5, written_ms=2_000)
    assert policy.due(buf, now_ms=2_000) == "bytes"
    buf.add(b"c", size=1, rows=5, written_ms=2_000)
    assert policy.due(buf, now_ms=2_000) == "rows"


_ROW = st.fixed_dictionaries({  # tag values that join to the same series text on purpose
    "host": st.sampled_from(["a", "b", None, "a\x1f", ""]), "dc": st.sampled_from(["x", None, "\x1fx", ""]),
    "a": st.one_of(st.none(), st.floats(-5, 5)), "b": st.one_of(st.none(), st.integers(-5, 5)),
    "time": st.integers(0, 3).map(lambda t: t * 1000)})


@given(st.lists(_ROW, max_size=40))
@hyp_settings(max_examples=300, deadline=None)
def test_dedup_merges_only_repeated_keys_and_agrees_with_merging_everything(rows):
    """The counted fast path gives exactly what merging every row gives."""
    schema = pa.schema([("host", pa.string()), ("dc", pa.string()), ("a", pa.float64()),
                        ("b", pa.int64()), ("time", NS), (ORDER_TS, pa.int64()), (ORDER_SEQ, pa.int64())])
    table = pa.Table.from_pylist([{**r, ORDER_TS: i % 3, ORDER_SEQ: i} for i, r in enumerate(rows)],
                                 schema=schema)
    table = pa.concat_tables([table.slice(0, len(rows) // 2), table.slice(len(rows) // 2)])  # chunks
    keys, values = ["host", "dc", "time"], ["a", "b"]

    def canonical(t: pa.Table) -> list:
        return sorted((tuple((k, str(v)) for k, v in sorted(r.items())) for r in t.to_pylist()))

    assert canonical(deduplicate(table, ["host", "dc"])) == canonical(_merge(table, keys, values))
