"""InfluxQL end to end over real DataFusion and in-memory Arrow tables (no mocks)."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persist.catalog import TableSchema
from query_api.influxql import (MemorySource, encode_json, execute_influxql, query_target,
                                to_table_rows)
from query_api.influxql.parser import ParseError
from query_api.influxql.results import _encode, go_float
from query_api.influxql.timeutil import format_rfc3339, parse_time_literal, window_starts

S = 1_000_000_000
M = 60 * S
H = 3600 * S
T0 = parse_time_literal("2020-01-01T00:00:00Z")
NOW = parse_time_literal("2030-01-01T00:00:00Z")


def table(rows: list[dict], kinds: dict[str, str]) -> tuple[pa.Table, TableSchema]:
    types = {"tag": pa.string(), "float": pa.float64(), "integer": pa.int64(),
             "uinteger": pa.uint64(), "string": pa.string(), "boolean": pa.bool_()}
    cols = {name: pa.array([r.get(name) for r in rows], types[kind]) for name, kind in kinds.items()}
    cols["time"] = pa.array([r["time"] for r in rows], pa.int64()).cast(pa.timestamp("ns"))
    return pa.table(cols), TableSchema({**kinds, "time": "time"})


@pytest.fixture
def source() -> MemorySource:
    src = MemorySource()
    cpu, cpu_schema = table([
        {"time": T0, "host": "a", "v": 1.0, "n": 10},
        {"time": T0 + 10 * M, "host": "a", "v": 3.0, "n": 20},
        {"time": T0 + 20 * M, "host": "a", "v": 3.0, "n": 31},
        {"time": T0 + 90 * M, "host": "a", "v": 7.0},
        {"time": T0, "host": "b", "v": 5.0, "n": 1},
        {"time": T0 + 70 * M, "host": "b", "n": 2},
        {"time": T0 + 5 * M, "v": 2.0},
    ], {"host": "tag", "v": "float", "n": "integer"})
    src.add_table("db", "cpu", cpu, cpu_schema)
    ev, ev_schema = table([
        {"time": T0, "svc": "x", "msg": "a<b", "ok": True},
        {"time": T0 + M, "svc": "x", "msg": "z", "ok": False},
    ], {"svc": "tag", "msg": "string", "ok": "boolean"})
    src.add_table("db", "events", ev, ev_schema)
    empty, empty_schema = table([], {"host": "tag", "v": "float"})
    src.add_table("other", "empty", empty, empty_schema)
    return src


def run(src: MemorySource, q: str, db: str | None = "db", epoch: str | None = None) -> dict:
    return asyncio.run(execute_influxql(q, db, src, now_ns=NOW, epoch=epoch))


def values(result: dict, statement: int = 0, series: int = 0) -> list[list]:
    return result["results"][statement]["series"][series]["values"]


def rfc(ns: int) -> str:
    return format_rfc3339(pa.array([ns], pa.int64()))[0].as_py()


# ---- raw queries ------------------------------------------------------------------------------


def test_raw_rows_ordered_with_series_key_ties(source):
    out = run(source, "SELECT v, host FROM cpu WHERE time < '2020-01-01T00:06:00Z'")
    assert values(out) == [[rfc(T0), 1.0, "a"], [rfc(T0), 5.0, "b"], [rfc(T0 + 5 * M), 2.0, None]]


def test_raw_row_exists_when_any_selected_field_exists(source):
    out = run(source, "SELECT v, n FROM cpu WHERE host = 'b'")
    assert values(out) == [[rfc(T0), 5.0, 1], [rfc(T0 + 70 * M), None, 2]]


def test_select_star_and_group_by(source):
    out = run(source, "SELECT * FROM cpu WHERE host = 'b'")
    assert out["results"][0]["series"][0]["columns"] == ["time", "host", "n", "v"]
    out = run(source, "SELECT * FROM cpu GROUP BY host LIMIT 1")
    series = out["results"][0]["series"]
    assert [s["tags"] for s in series] == [{"host": ""}, {"host": "a"}, {"host": "b"}]
    assert series[0]["columns"] == ["time", "n", "v"]


def test_arithmetic_semantics(source):
    out = run(source, "SELECT n / 4, n % 3, n % 0, n / 0, v * 2 + n, v::integer, n::float "
                      "FROM cpu WHERE host = 'a' AND time < '2020-01-01T00:15:00Z'")
    assert values(out) == [[rfc(T0), 2.5, 1, 0, 0.0, 12.0, 1, 10.0],
                           [rfc(T0 + 10 * M), 5.0, 2, 0, 0.0, 26.0, 3, 20.0]]
    out = run(source, "SELECT -n % 3 FROM cpu WHERE host = 'a' AND time = '2020-01-01T00:20:00Z'")
    assert values(out)[0][1] == -1  # Go's truncated remainder


def test_order_desc_limit_offset(source):
    out = run(source, "SELECT v FROM cpu WHERE host = 'a' ORDER BY time DESC LIMIT 2 OFFSET 1")
    assert [r[1] for r in values(out)] == [3.0, 3.0]
    assert values(out)[0][0] == rfc(T0 + 20 * M)


def test_where_on_fields_tags_regex_and_booleans(source):
    assert values(run(source, "SELECT v FROM cpu WHERE v > 2 AND host =~ /^a$/")) == [
        [rfc(T0 + 10 * M), 3.0], [rfc(T0 + 20 * M), 3.0], [rfc(T0 + 90 * M), 7.0]]
    assert len(values(run(source, "SELECT v FROM cpu WHERE host != 'a'"))) == 2
    assert values(run(source, "SELECT v FROM cpu WHERE host = ''")) == [[rfc(T0 + 5 * M), 2.0]]
    assert values(run(source, "SELECT msg FROM events WHERE ok = false")) == [[rfc(T0 + M), "z"]]
    assert values(run(source, "SELECT msg FROM events WHERE msg !~ /</")) == [[rfc(T0 + M), "z"]]
    assert "series" not in run(source, "SELECT v FROM cpu WHERE host = 5")["results"][0]


def test_time_conditions(source):
    assert len(values(run(source, f"SELECT v FROM cpu WHERE time >= {T0 + 10 * M}"))) == 3
    assert len(values(run(source, "SELECT v FROM cpu WHERE time > now() - 20000d"))) == 6
    assert len(values(run(source, "SELECT v FROM cpu WHERE time >= '2020-01-01' + 10m"))) == 3
    out = run(source, "SELECT v FROM cpu WHERE time < '2020-01-01 01:06:00' tz('Europe/Paris')")
    assert [r[0] for r in values(out)][-1] == "2020-01-01T01:05:00+01:00"


# ---- aggregates and selectors -----------------------------------------------------------------


def test_aggregates_without_group_by_time(source):
    out = run(source, "SELECT count(v), sum(n), mean(n), median(n), spread(n), min(v), "
                      "max(v), first(v), last(v), stddev(v) FROM cpu WHERE host = 'a'")
    row = values(out)[0]
    assert row[0] == "1970-01-01T00:00:00Z"
    assert row[1:10] == [4, 61, 61 / 3, 20.0, 21, 1.0, 7.0, 1.0, 7.0]
    assert isinstance(row[3], float) and isinstance(row[5], int)
    assert row[10] == pytest.approx(2.5166114784235836)


def test_aggregate_time_is_query_start(source):
    out = run(source, "SELECT count(v) FROM cpu WHERE time >= '2020-01-01T00:10:00Z'")
    assert values(out) == [["2020-01-01T00:10:00Z", 3]]


def test_single_selector_returns_point_time_and_aux(source):
    out = run(source, "SELECT max(v), host FROM cpu")
    assert values(out) == [[rfc(T0 + 90 * M), 7.0, "a"]]
    # ties: earliest point
    assert values(run(source, "SELECT max(v) FROM cpu WHERE host = 'a' AND time < "
                              "'2020-01-01T01:00:00Z'"))[0][0] == rfc(T0 + 10 * M)
    assert values(run(source, "SELECT percentile(n, 50) FROM cpu WHERE host = 'a'")) == [
        [rfc(T0 + 10 * M), 20]]
    assert "series" not in run(source, "SELECT percentile(v, 0) FROM cpu")["results"][0]
    assert values(run(source, "SELECT median(v) FROM cpu WHERE host = 'a'"))[0][1] == 3.0


def test_first_last_on_strings_and_booleans(source):
    out = run(source, "SELECT first(msg), last(ok), count(msg) FROM events")
    assert values(out) == [["1970-01-01T00:00:00Z", "a<b", False, 2]]


def test_distinct(source):
    assert values(run(source, "SELECT distinct(v) FROM cpu WHERE host = 'a'")) == [
        ["1970-01-01T00:00:00Z", 1.0], ["1970-01-01T00:00:00Z", 3.0],
        ["1970-01-01T00:00:00Z", 7.0]]
    assert values(run(source, "SELECT count(distinct(v)) FROM cpu"))[0][1] == 5


def test_group_by_time_fill_modes(source):
    q = ("SELECT mean(v) FROM cpu WHERE host = 'a' AND time >= '2020-01-01T00:00:00Z' "
         "AND time < '2020-01-01T01:40:00Z' GROUP BY time(20m)")
    got = {mode: [r[1] for r in values(run(source, f"{q} fill({mode})"))]
           for mode in ("null", "previous", "linear", "9")}
    assert got["null"] == [2.0, 3.0, None, None, 7.0]
    assert got["previous"] == [2.0, 3.0, 3.0, 3.0, 7.0]
    slope = (7.0 - 3.0) / float(60 * M)  # 1.x: m*x + b in float64
    assert got["linear"] == [2.0, 3.0, slope * (20 * M) + 3.0, slope * (40 * M) + 3.0, 7.0]
    assert got["9"] == [2.0, 3.0, 9.0, 9.0, 7.0]
    assert [r[1] for r in values(run(source, f"{q} fill(none)"))] == [2.0, 3.0, 7.0]
    desc = [r[1] for r in values(run(source, f"{q} fill(previous) ORDER BY time DESC"))]
    assert desc == [7.0, 7.0, 7.0, 3.0, 2.0]


def test_count_fills_zero_and_integer_linear(source):
    q = ("SELECT count(v), max(n) FROM cpu WHERE host = 'a' AND time >= '2020-01-01T00:00:00Z' "
         "AND time < '2020-01-01T01:00:00Z' GROUP BY time(10m)")
    assert [r[1:] for r in values(run(source, q))] == [[1, 10], [1, 20], [1, 31], [0, None],
                                                       [0, None], [0, None]]
    lin = run(source, "SELECT max(n) FROM cpu WHERE host = 'b' AND time >= '2020-01-01T00:00:00Z' "
                      "AND time < '2020-01-01T01:20:00Z' GROUP BY time(20m) fill(linear)")
    assert [r[1] for r in values(lin)] == [1, 1, 1, 2]  # int64(m*x + b), truncated


def test_group_by_time_without_lower_bound_starts_per_series(source):
    out = run(source, "SELECT count(n) FROM cpu WHERE time < '2020-01-01T01:30:00Z' "
                      "GROUP BY time(30m), host")
    series = out["results"][0]["series"]
    assert [s["tags"]["host"] for s in series] == ["a", "b"]
    assert [r[0] for r in series[0]["values"]][0] == rfc(T0)
    assert [r[1] for r in series[1]["values"]] == [1, 0, 1]


def test_calls_only_fill_where_their_series_has_points(source):
    out = run(source, "SELECT count(v), count(n) FROM cpu WHERE time >= '2020-01-01T00:00:00Z' "
                      "AND time < '2020-01-01T00:20:00Z' GROUP BY time(10m), host")
    series = {s["tags"]["host"]: s["values"] for s in out["results"][0]["series"]}
    assert series[""] == [[rfc(T0), 1, None], [rfc(T0 + 10 * M), 0, None]]


def test_group_by_time_offset_and_tz(source):
    out = run(source, "SELECT count(v) FROM cpu WHERE time >= '2020-01-01T00:00:00Z' AND "
                      "time < '2020-01-01T01:00:00Z' GROUP BY time(1h, 15m)")
    assert [r[0] for r in values(out)] == ["2019-12-31T23:15:00Z", "2020-01-01T00:15:00Z"]
    out = run(source, "SELECT count(v) FROM cpu WHERE time >= '2020-01-01T00:00:00Z' AND "
                      "time < '2020-01-01T02:00:00Z' GROUP BY time(1h) tz('Asia/Kolkata')")
    # local hour windows: the first one (05:00+05:30) starts before the query (05:30+05:30)
    assert [r[0] for r in values(out)] == ["2020-01-01T05:00:00+05:30",
                                           "2020-01-01T06:00:00+05:30",
                                           "2020-01-01T07:00:00+05:30"]


def test_day_windows_across_dst():
    src = MemorySource()
    start = parse_time_literal("2009-10-24T00:00:00+02:00")
    rows = [{"time": start + i * 6 * H, "v": 1.0} for i in range(16)]
    data, schema = table(rows, {"v": "float"})
    src.add_table("db", "m", data, schema)
    out = run(src, "SELECT count(v) FROM m WHERE time >= '2009-10-24 00:00:00' AND "
                   "time < '2009-10-28 00:00:00' GROUP BY time(1d) tz('Europe/Paris')")
    assert values(out) == [["2009-10-24T00:00:00+02:00", 4], ["2009-10-25T00:00:00+02:00", 5],
                           ["2009-10-26T00:00:00+01:00", 4], ["2009-10-27T00:00:00+01:00", 3]]


def test_window_grid_steps_like_the_fill_iterator_across_dst():
    from query_api.influxql.timeutil import window_grid
    first = parse_time_literal("2009-10-23T00:00:00+02:00")
    last = parse_time_literal("2009-10-27T00:00:00+01:00")
    grid = window_grid(first, last, 24 * H, tz="Europe/Paris")
    assert format_rfc3339(grid, "Europe/Paris").to_pylist() == [
        "2009-10-23T00:00:00+02:00", "2009-10-24T00:00:00+02:00", "2009-10-25T00:00:00+02:00",
        "2009-10-26T00:00:00+01:00", "2009-10-27T00:00:00+01:00"]
    spring = window_grid(parse_time_literal("2009-03-28T23:00:00Z"),
                         parse_time_literal("2009-03-29T07:00:00Z"), 3 * H, tz="Europe/Paris")
    assert format_rfc3339(spring, "Europe/Paris").to_pylist() == [
        "2009-03-29T00:00:00+01:00", "2009-03-29T03:00:00+02:00", "2009-03-29T06:00:00+02:00",
        "2009-03-29T09:00:00+02:00"]


def test_rfc3339_formatting():
    times = pa.array([0, -1, 1_500_000_000, 123_000, T0], pa.int64())
    assert format_rfc3339(times).to_pylist() == [
        "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999999Z", "1970-01-01T00:00:01.5Z",
        "1970-01-01T00:00:00.000123Z", "2020-01-01T00:00:00Z"]
    assert format_rfc3339(times, "America/St_Johns")[4].as_py() == "2019-12-31T20:30:00-03:30"
    many = pa.array([T0, T0 + S] * 300, pa.int64())  # the repeated-windows path
    assert format_rfc3339(many).to_pylist()[:2] == ["2020-01-01T00:00:00Z", "2020-01-01T00:00:01Z"]


def test_window_starts_match_floor():
    times = pa.array([-1, 0, 1, 59 * S, 60 * S, 61 * S], pa.int64())
    assert window_starts(times, 60 * S).to_pylist() == [-60 * S, 0, 0, 0, 60 * S, 60 * S]
    assert window_starts(times, 60 * S, 30 * S).to_pylist() == [
        -30 * S, -30 * S, -30 * S, 30 * S, 30 * S, 30 * S]


def test_epoch_output(source):
    q = "SELECT v FROM cpu WHERE host = 'b'"
    assert values(run(source, q, epoch="ns"))[0][0] == T0
    assert values(run(source, q, epoch="ms"))[0][0] == T0 // 10 ** 6
    assert values(run(source, q, epoch="h"))[0][0] == T0 // H


def test_wildcard_calls_over_several_measurements(source):
    out = run(source, "SELECT count(*) FROM cpu, events")
    assert [s["name"] for s in out["results"][0]["series"]] == ["cpu", "events"]
    assert out["results"][0]["series"][0]["columns"] == [
        "time", "count_msg", "count_n", "count_ok", "count_v"]
    assert values(out, series=0)[0][1:] == [None, 5, None, 6]


# ---- databases, SHOW, errors ------------------------------------------------------------------


def test_database_resolution(source):
    assert run(source, "SELECT v FROM cpu", db=None)["results"][0] == {
        "statement_id": 0, "error": "database name required"}
    assert run(source, "SELECT v FROM nodb..cpu")["results"][0]["error"] == \
        "database not found: nodb"
    assert len(values(run(source, 'SELECT v FROM "db"."autogen"."cpu"', db=None))) == 6
    assert run(source, "SELECT v FROM db.rp1.cpu")["results"][0]["error"] == \
        "database not found: db/rp1"
    assert run(source, "SELECT v FROM /^cp/")["results"][0]["series"][0]["name"] == "cpu"
    assert run(source, "SELECT v FROM other..empty")["results"][0] == {"statement_id": 0}


def test_show_statements(source):
    assert values(run(source, "SHOW DATABASES")) == [["db"], ["other"]]
    assert values(run(source, "SHOW MEASUREMENTS")) == [["cpu"], ["events"]]
    assert values(run(source, "SHOW MEASUREMENTS WHERE svc = 'x'")) == [["events"]]
    assert values(run(source, "SHOW TAG KEYS FROM cpu")) == [["host"]]
    assert values(run(source, "SHOW TAG VALUES WITH KEY = host")) == [["host", "a"], ["host", "b"]]
    assert values(run(source, "SHOW FIELD KEYS FROM events")) == [["msg", "string"],
                                                                  ["ok", "boolean"]]
    assert values(run(source, "SHOW SERIES")) == [["cpu"], ["cpu,host=a"], ["cpu,host=b"],
                                                  ["events,svc=x"]]
    assert values(run(source, "SHOW RETENTION POLICIES")) == [["autogen", "0s", "168h0m0s", 1,
                                                               True]]


def test_parse_error_fails_the_request(source):
    assert run(source, "SELEC v FROM cpu") == {"error": "error parsing query: found SELEC, "
                                                        "expected SELECT, DELETE, SHOW, CREATE, "
                                                        "DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, "
                                                        "KILL at line 1, char 1"}


def test_statements_after_an_error_are_not_executed(source):
    out = run(source, "SELECT count(v) FROM cpu; SELECT mean(msg) FROM events; SELECT v FROM cpu")
    assert out["results"][1]["error"].startswith("unsupported mean iterator type")
    assert out["results"][2] == {"statement_id": 2, "error": "not executed"}


# ---- v3 helpers and JSON encoding -------------------------------------------------------------


def test_to_table_rows(source):
    out = run(source, "SELECT max(v) FROM cpu GROUP BY host", epoch="ns")
    rows = to_table_rows(out)
    assert rows.column_names == ["iox::measurement", "time", "host", "max"]
    assert rows.column("time").type == pa.timestamp("ns")
    assert rows.column("host").to_pylist() == ["", "a", "b"]
    assert rows.column("max").to_pylist() == [2.0, 7.0, 5.0]
    assert rows.column("iox::measurement").to_pylist() == ["cpu"] * 3
    with pytest.raises(ValueError, match="database name required"):
        to_table_rows(run(source, "SELECT v FROM cpu", db=None))


def test_query_target():
    target = query_target("SELECT v FROM db1..cpu")
    assert (target.statement_count, target.database) == (1, "db1")
    assert query_target("SHOW MEASUREMENTS ON x; SELECT v FROM m").databases == ("x",)
    assert query_target("SELECT v FROM m").database is None
    with pytest.raises(ParseError):
        query_target("SELEC")


@pytest.mark.parametrize("value, text", [(5.0, "5"), (1e-07, "1e-7"), (1.5e-10, "1.5e-10"),
                                         (1e21, "1e+21"), (123456789.125, "123456789.125"),
                                         (1e20, "100000000000000000000"), (-0.25, "-0.25"),
                                         (0.1, "0.1"), (1.2345678901234567e19, "12345678901234567000")])
def test_go_float(value, text):
    assert go_float(value) == text


def test_encode_json_matches_go():
    body = {"results": [{"statement_id": 0, "series": [
        {"name": "m", "columns": ["time", "v"], "values": [["t", 2.0], ["u", "a<b&c"]]}]}]}
    assert encode_json(body) == (b'{"results":[{"statement_id":0,"series":[{"name":"m","columns":'
                                 b'["time","v"],"values":[["t",2],["u","a\\u003cb\\u0026c"]]}]}]}\n')
    assert encode_json({"a": [], "b": {"c": [1.5]}}, pretty=True) == (
        b'{\n    "a": [],\n    "b": {\n        "c": [\n            1.5\n        ]\n    }\n}\n')


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.text(max_size=6),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([1e15, 1e16, 9.99e20, 1e21, -1.5e17, 1e-6, 1e-7, 2.5e-5, -0.0]))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda width: st.lists(
    st.lists(_scalars, min_size=width, max_size=width), min_size=2, max_size=12)))
def test_encoding_values_column_by_column_matches_value_by_value(rows):
    """Large results encode their rows column by column through Arrow; every byte must be what
    Go's encoder (the value-by-value path) writes."""
    def one(value) -> str:
        out: list[str] = []
        _encode(value, out)
        return "".join(out)

    expected = "[" + ",".join("[" + ",".join(one(v) for v in row) + "]" for row in rows) + "]"
    assert encode_json({"values": rows}).decode() == '{"values":' + expected + "}\n"


def test_values_that_json_cannot_hold_still_fail_as_go_fails():
    with pytest.raises(ValueError, match="unsupported value"):
        encode_json({"values": [[1.0], [float("nan")]]})


# ---- properties: LIMIT 1 narrowing, GROUP BY time aggregates against direct computation -------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["a", "b", None]),
                          st.sampled_from(["x", "y"]), st.one_of(st.none(), st.integers(0, 9))),
                min_size=1, max_size=30),
       st.booleans(), st.sampled_from(["host", "*", None]))
def test_limit_1_is_the_first_row_of_each_series_ranked_in_full(points, descending, group):
    """``LIMIT 1`` narrows the rows to each series' last (first) time before ranking; its
    answer must be the first row that ``LIMIT 2``, ranked over every row, gives per series
    (ties on time, null tags and rows without the field included)."""
    src = MemorySource()
    data, schema = table([{"time": T0 + t * S, "host": h, "dc": d, "v": v} for t, h, d, v in points],
                         {"host": "tag", "dc": "tag", "v": "integer"})
    src.add_table("db", "m", data, schema)
    tail = (f" GROUP BY {group}" if group else "") + (" ORDER BY time DESC" if descending else "")
    one = run(src, f"SELECT v, dc FROM m{tail} LIMIT 1")["results"][0].get("series", [])
    two = run(src, f"SELECT v, dc FROM m{tail} LIMIT 2")["results"][0].get("series", [])
    assert [(s.get("tags"), s["values"]) for s in one] == [(s.get("tags"), s["values"][:1]) for s in two]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3599), st.sampled_from(["a", "b", "c"]),
                          st.integers(-1000, 1000)), min_size=1, max_size=60,
                unique_by=lambda p: (p[0], p[1])))
def test_group_by_time_matches_reference(points):
    src = MemorySource()
    data, schema = table([{"time": T0 + t * S, "host": h, "v": v} for t, h, v in points],
                         {"host": "tag", "v": "integer"})
    src.add_table("db", "m", data, schema)
    out = run(src, "SELECT count(v), sum(v), min(v), max(v), spread(v) FROM m WHERE "
                   "time >= '2020-01-01T00:00:00Z' AND time < '2020-01-01T01:00:00Z' "
                   "GROUP BY time(10m), host fill(none)")
    expected: dict[tuple[str, int], list[int]] = defaultdict(list)
    for t, h, v in points:
        expected[(h, t // 600)].append(v)
    got = {}
    for series in out["results"][0]["series"]:
        for row in series["values"]:
            bucket = (parse_time_literal(row[0]) - T0) // (600 * S)
            got[(series["tags"]["host"], bucket)] = row[1:]
    assert got == {k: [len(v), sum(v), min(v), max(v), max(v) - min(v)]
                   for k, v in expected.items()}


# ---- properties: sum/mean with 1.x's arithmetic, raw rows in Arrow as in SQL ------------------

_ORDER_SENSITIVE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    st.sampled_from([1e16, -1e16, 0.1, 0.2, 0.3, 3.3, -2.2, 1e-3, 7e15, 0.0, -0.0, 2.0**53]))


def _reference_sums(points) -> dict:
    """1.x's reducers, point by point: per (series, window) ``sum += v`` in time order (from
    0), a mean ``sum / count``; per (group, window) the series' sums added, and their means
    combined weighted by count (``sum += mean * count``, a lone point as it is), series in key
    order."""
    per_series: dict = defaultdict(list)
    for t, host, dc, v in sorted(points, key=lambda p: p[0]):
        per_series[(host, t // 600, dc)].append(v)
    groups: dict = defaultdict(list)
    for (host, window, dc), values in sorted(per_series.items()):
        total = 0.0
        for v in values:
            total += v
        groups[(host, window)].append((total, len(values)))
    out = {}
    for key, parts in groups.items():
        total = weighted = 0.0
        count = 0
        for s, c in parts:
            total += s
            mean = s / c
            weighted += mean * c if c >= 2 else mean
            count += c
        out[key] = (total, weighted / count)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1799), st.sampled_from(["a", "b"]),
                          st.sampled_from(["x", "y", "z"]), _ORDER_SENSITIVE),
                min_size=1, max_size=80, unique_by=lambda p: (p[0], p[1], p[2])),
       st.randoms(use_true_random=False), st.sampled_from(["shuffled", "parts", "sorted"]))
def test_sum_and_mean_add_like_influxdb1(points, rng, layout):
    """Bit for bit: values where the order of additions matters, groups of one series (GROUP
    BY host, dc) and of several (GROUP BY host); rows in any order, or as a source's parts
    give them (each part sorted by series and time, the parts in any order, one chunk each)."""
    rows = [{"time": T0 + t * S, "host": h, "dc": d, "v": v} for t, h, d, v in points]
    kinds = {"host": "tag", "dc": "tag", "v": "float"}
    if layout == "shuffled":
        rng.shuffle(rows)
    parts = [rows]
    if layout == "parts":
        cuts = sorted(rng.sample(range(1, len(rows)), min(3, len(rows) - 1))) if len(rows) > 1 else []
        by_time = sorted(rows, key=lambda r: r["time"])
        parts = [by_time[a:b] for a, b in zip([0] + cuts, cuts + [len(rows)])]
        parts = [sorted(p, key=lambda r: (r["host"], r["dc"], r["time"])) for p in parts]
        rng.shuffle(parts)
    elif layout == "sorted":
        rows.sort(key=lambda r: (r["host"], r["dc"], r["time"]))
    src = MemorySource()
    pieces = [table(p, kinds) for p in parts]
    data, schema = pa.concat_tables([t for t, _ in pieces]), pieces[0][1]
    src.add_table("db", "m", data, schema)
    where = "WHERE time >= '2020-01-01T00:00:00Z' AND time < '2020-01-01T00:30:00Z'"
    expected = _reference_sums(points)
    out = run(src, f"SELECT sum(v), mean(v) FROM m {where} GROUP BY time(10m), host fill(none)")
    got = {(s["tags"]["host"], (parse_time_literal(r[0]) - T0) // (600 * S)): tuple(r[1:])
           for s in out["results"][0]["series"] for r in s["values"]}
    assert {k: (repr(a), repr(b)) for k, (a, b) in got.items()} == {
        k: (repr(a), repr(b)) for k, (a, b) in expected.items()}
    single = _reference_sums([(t, f"{h}/{d}", d, v) for t, h, d, v in points])
    out = run(src, f"SELECT sum(v), mean(v) FROM m {where} GROUP BY time(10m), host, dc "
                   "fill(none)")
    got = {(f"{s['tags']['host']}/{s['tags']['dc']}",
            (parse_time_literal(r[0]) - T0) // (600 * S)): tuple(r[1:])
           for s in out["results"][0]["series"] for r in s["values"]}
    assert {k: (repr(a), repr(b)) for k, (a, b) in got.items()} == {
        k: (repr(a), repr(b)) for k, (a, b) in single.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["a", "b", None]),
                          st.sampled_from(["x", "y", None]),
                          st.one_of(st.none(), st.integers(0, 9)),
                          st.one_of(st.none(), st.floats(allow_nan=False))),
                min_size=1, max_size=40),
       st.booleans(), st.sampled_from(["", " GROUP BY host", " GROUP BY *", " GROUP BY host, nope"]),
       st.sampled_from([(1, 0), (2, 0), (1, 1), (0, 0), (0, 2)]),
       st.sampled_from(["", " WHERE host = 'a'", " WHERE dc != 'y' OR host = ''"]))
def test_raw_rows_in_arrow_equal_the_sql_rows(points, descending, group, limits, where):
    """The Arrow path of raw queries (tag conditions, LIMIT 1 narrowed to each group's edge
    time, other limits sorted in full) gives the SQL path's rows, nulls and ties included."""
    from query_api.influxql import select
    from query_api.influxql.parser import parse_query
    from query_api.influxql.planner import Schema, plan_select

    data, schema = table([{"time": T0 + t * S, "host": h, "dc": d, "v": v, "f": f}
                          for t, h, d, v, f in points],
                         {"host": "tag", "dc": "tag", "v": "integer", "f": "float"})
    third = data.num_rows // 3  # in chunks, as a source's parts come
    data = pa.concat_tables([data.slice(0, third), data.slice(third, third), data.slice(2 * third)])
    limit, offset = limits
    text = (f"SELECT v, f, dc FROM m{where}{group}" + (" ORDER BY time DESC" if descending else "")
            + (f" LIMIT {limit}" if limit else "") + (f" OFFSET {offset}" if offset else ""))
    kinds = dict(schema.columns)
    plan = plan_select(parse_query(text).statements[0], Schema(kinds), NOW)
    args = (plan, data, select._kinds_present(kinds, data), NOW, ["f", "v"], ["dc", "f", "v"],
            ["dc", "host"])
    arrow = select._raw_rows_arrow(*args)
    assert arrow is not None
    sql = select._raw_rows_sql(*args)
    if arrow.num_rows == 0:
        assert sql.num_rows == 0
        return
    names = ["__time"] + [f"__g{i}" for i in range(len(plan.group_tags))] + [
        "__v0", "__v1", "__v2", "__k0", "__k1"]
    assert arrow.select(names).to_pylist() == sql.select(names).to_pylist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8),
                          st.sampled_from(["<a>", "x&y", "q\"", "b\\s", "\u2028", "\x00", "\x1f",
                                           "\x7f", "é", "plain"])), max_size=12))
def test_string_column_tokens_match_go_strings(values):
    """Strings quoted in one kernel when none needs escaping, else one by one: either way
    each token is what Go's encoder writes."""
    from query_api.influxql.results import _go_string, arrow_tokens

    tokens = arrow_tokens(pa.array(values, pa.string())).to_pylist()
    assert tokens == ["null" if v is None else _go_string(v) for v in values]
