"""The small-aggregate fast path (query_api/influxql/small_select.py) gives exactly the general
path's result (select.run_aggregate) on every plan it takes, and declines the others."""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from query_api.influxql.parser import parse_query
from query_api.influxql.planner import Schema, plan_select
from query_api.influxql.select import run_aggregate
from query_api.influxql.small_select import applies, run_small
from query_api.influxql.timeutil import parse_time_literal

S = 1_000_000_000
M = 60 * S
T0 = parse_time_literal("2020-01-01T00:00:00Z")
NOW = parse_time_literal("2030-01-01T00:00:00Z")
KINDS = {"host": "tag", "dc": "tag", "f": "float", "i": "integer", "s": "string", "time": "time"}


def make_table(rows: list[tuple]) -> pa.Table:
    """rows: (time offset ns, host, dc, f, i, s)."""
    return pa.table({
        "dc": pa.array([r[2] for r in rows], pa.string()),
        "f": pa.array([r[3] for r in rows], pa.float64()),
        "host": pa.array([r[1] for r in rows], pa.string()),
        "i": pa.array([r[4] for r in rows], pa.int64()),
        "s": pa.array([r[5] for r in rows], pa.string()),
        "time": pa.array([T0 + r[0] for r in rows], pa.int64()).cast(pa.timestamp("ns")),
    })


def plan_of(q: str):
    return plan_select(parse_query(q).statements[0], Schema(KINDS), NOW)


def both(q: str, table: pa.Table):
    plan = plan_of(q)
    return run_small(plan, table, KINDS, NOW), run_aggregate(plan, table, KINDS, NOW)


def assert_same(small, general) -> None:
    assert small is not False, "the fast path declined"
    if general is None:
        assert small is None
        return
    assert small is not None
    assert small.starts == general.starts
    assert small.group_tags == general.group_tags
    assert small.table.column_names == general.table.column_names
    for name in small.table.column_names:
        a, b = small.table.column(name), general.table.column(name)
        assert a.type == b.type, name
        assert a.to_pylist() == b.to_pylist(), name


rows_strategy = st.lists(
    st.tuples(st.integers(0, 200) .map(lambda k: k * 30 * S),
              st.sampled_from(["a", "b", None]), st.sampled_from(["x", "y", None]),
              st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
              st.one_of(st.none(), st.integers(-(2**62), 2**62)),
              st.sampled_from(["p", None])),
    max_size=60)

queries = st.builds(
    lambda calls, where, lower, upper, interval, offset, fill, order: (
        f"SELECT {calls} FROM cpu WHERE {where}{lower}time < '2020-01-01T01:{upper:02d}:00Z' "
        f"GROUP BY time({interval}m{offset}){fill}{order}"),
    st.sampled_from(["max(f)", "min(i)", "max(f), min(f), max(i) AS top",
                     "max(i), max(i)", "min(f) AS low"]),
    st.sampled_from(["", "host = 'a' AND ", "(host = 'a' OR host = 'b') AND ",
                     "host != 'b' AND dc = 'x' AND ", "host = '' AND "]),
    st.sampled_from(["", "time >= '2020-01-01T00:07:30Z' AND ", "time >= '2020-01-01T00:00:00Z' AND ",
                     "time > '2020-01-01T01:30:00Z' AND "]),
    st.integers(0, 59), st.sampled_from([1, 5, 7, 60]), st.sampled_from(["", ", 2m", ", -1m"]),
    st.sampled_from(["", " fill(null)", " fill(none)"]),
    st.sampled_from(["", " ORDER BY time DESC", " ORDER BY time DESC LIMIT 5", " LIMIT 3",
                     " LIMIT 2 OFFSET 4", " ORDER BY time DESC LIMIT 1 OFFSET 2", " OFFSET 100",
                     " SLIMIT 1", " SOFFSET 1"]))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows_strategy, queries)
def test_same_result_as_the_general_path(rows, q):
    table = make_table(rows)
    plan = plan_of(q)
    if plan.time_range.empty or table.num_rows == 0:
        return  # the executor answers these before any runner
    assert_same(*both(q, table))


def test_tsbs_single_groupby_shape():
    rows = [(k * 10 * S, f"h{k % 3}", "x", float(k % 17), k, None) for k in range(800)]
    q = ("SELECT max(f) FROM cpu WHERE (host = 'h1') AND time >= '2020-01-01T00:03:20Z' "
         "AND time < '2020-01-01T01:03:20Z' GROUP BY time(1m)")
    small, general = both(q, make_table(rows))
    assert_same(small, general)
    assert small.table.num_rows == 61


@pytest.mark.parametrize("q", [
    "SELECT mean(f) FROM cpu GROUP BY time(1m)",
    "SELECT count(f) FROM cpu GROUP BY time(1m)",
    "SELECT max(f) FROM cpu GROUP BY time(1m), host",
    "SELECT max(f) FROM cpu GROUP BY time(1m) fill(0)",
    "SELECT max(f) FROM cpu GROUP BY time(1m) fill(previous)",
    "SELECT max(f) FROM cpu GROUP BY time(1m) tz('Europe/Paris')",
    "SELECT max(f), host FROM cpu GROUP BY time(1m)",
    "SELECT max(f) * 2 FROM cpu GROUP BY time(1m)",
    "SELECT max(f) FROM cpu",
    "SELECT f FROM cpu",
])
def test_other_shapes_are_declined(q):
    assert not applies(plan_of(q))


def test_declines_a_field_condition_and_other_types():
    table = make_table([(0, "a", "x", 1.0, 1, "p")])
    plan = plan_of("SELECT max(f) FROM cpu WHERE f > 0 AND time >= '2020-01-01T00:00:00Z' "
                   "AND time < '2020-01-01T01:00:00Z' GROUP BY time(1m)")
    assert run_small(plan, table, KINDS, NOW) is False
    unsigned = table.set_column(table.column_names.index("i"), "i",
                                table.column("i").cast(pa.uint64()))
    plan = plan_of("SELECT max(i) FROM cpu WHERE time >= '2020-01-01T00:00:00Z' "
                   "AND time < '2020-01-01T01:00:00Z' GROUP BY time(1m)")
    assert run_small(plan, unsigned, {**KINDS, "i": "uinteger"}, NOW) is False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 2**63 - 1),
                          st.integers(0, 2**53).map(lambda s: s * 1_000_000_000 % 2**63)),
                max_size=40))
def test_small_utc_formatting_matches_the_arrow_kernels(values):
    """format_rfc3339 formats few UTC times one by one; same text as the vectorised form."""
    from query_api.influxql.timeutil import _format, format_rfc3339
    ns = pa.array(values, pa.int64())
    assert format_rfc3339(ns).to_pylist() == _format(ns, None).to_pylist()
