"""Pure parts of the InfluxQL function registry, INTO encoding and continuous query timing.
(Their InfluxDB 1.x compatibility is checked by tests/test_influxql_compat.py.)"""
from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from persist.continuous_queries import ContinuousQuery
from query_api.influxql import ast, functions
from query_api.influxql.continuous import continuous_query_of, run_range, run_statement_text
from query_api.influxql.into import to_line_protocol
from query_api.influxql.parser import ParseError, parse_query
from query_api.influxql.results import Series, StatementResult
from topics.line_protocol import parse_lp


def _running_average(values: list[float], n: int) -> list[float]:
    """1.x's moving average reducer, point by point (the reference)."""
    buf: list[float] = []
    total, pos, out = 0.0, 0, []
    for v in values:
        if len(buf) < n:
            buf.append(v)
        else:
            total -= buf[pos]
            buf[pos] = v
        total += v
        pos = (pos + 1) % n
        if len(buf) == n:
            out.append(total / n)
    return out


@pytest.mark.parametrize("n", [2, 3, 7])
def test_moving_average_reproduces_the_running_sum_bit_for_bit(n):
    rng = random.Random(n)
    values = [rng.uniform(-1e6, 1e6) / 7 for _ in range(200)]
    out, mask = functions.moving_average(np.array(values), np.arange(200), 1, n)
    assert out.tolist() == _running_average(values, n)
    assert mask.tolist() == [False] * (n - 1) + [True] * (200 - n + 1)


def test_derivative_skips_repeated_times_and_non_negative_drops_decreases():
    values = np.array([1.0, 5.0, 3.0, 2.0, 6.0])
    times = np.array([0, 10, 10, 20, 30]) * 1_000_000_000
    out, mask = functions.derivative(values, times, 1_000_000_000, 0)
    assert out.tolist() == [0.4, -0.3, 0.4] and mask.tolist() == [False, True, False, True, True]
    out, mask = functions.TRANSFORMS["non_negative_derivative"](values, times, 10 ** 10, 0)
    assert out.tolist() == [4.0, 4.0] and mask.tolist() == [False, True, False, False, True]


def test_elapsed_counts_whole_units_and_cumulative_sum_keeps_integers():
    times = np.array([0, 90, 200])
    out, _ = functions.elapsed(np.array([1, 2, 3]), times, 60, 0)
    assert out.tolist() == [1, 1]
    out, mask = functions.cumulative_sum(np.array([1, 2, 3]), times, 1, 0)
    assert out.tolist() == [1, 3, 6] and out.dtype.kind == "i" and mask.all()


def test_integral_splits_segments_at_window_ends():
    values = np.array([0.0, 10.0])
    times = np.array([0, 20])
    windows, areas = functions.integral_contributions(values, times, np.array([0, 10]),
                                                      np.array([10, 20]), 1)
    # value 5 at the window end: 0.5*(0+5)*10 = 25 in the first window, 0.5*(5+10)*10 = 75
    assert windows.tolist() == [0, 0, 10] and areas.tolist() == [0.0, 25.0, 75.0]


def test_registry_knows_kinds_and_arity():
    assert functions.kind_of("derivative") == "transform"
    assert functions.kind_of("top") == "multi"
    assert functions.kind_of("atan2") == "math" and functions.REGISTRY["atan2"].min_args == 2
    assert functions.kind_of("holt_winters") is None


def test_into_encodes_rows_as_line_protocol_that_parses_back():
    table = pa.table({"time": pa.array([1, 2, 3], pa.int64()),
                      "mean": [1.5, None, 1 / 3],
                      "n": pa.array([7, None, None], pa.int64()),
                      "s": ['say "hi"', None, "a\\b"]})
    result = StatementResult(series=[Series("cpu", ["time", "mean", "n", "s"], table,
                                            tags={"host": "a b", "empty": ""})])
    body, count = to_line_protocol(result, ast.IntoTarget("m,1"))
    assert count == 2
    parsed = parse_lp(body, precision="ns")
    assert not parsed.errors
    [(name, table_out)] = parsed.tables.items()
    assert name == "m,1"
    rows = table_out.batch.drop_columns(["time"]).to_pydict()
    assert rows["host"] == ["a b", "a b"]
    assert rows["mean"] == [1.5, 1 / 3] and rows["n"] == [7, None]
    assert rows["s"] == ['say "hi"', "a\\b"]


def test_into_target_forms_parse():
    into = [parse_query(q).statements[0].into for q in (
        "SELECT mean(x) INTO db.rp.m FROM cpu", "SELECT * INTO :MEASUREMENT FROM cpu",
        "SELECT * INTO db..:MEASUREMENT FROM /.*/", "SELECT x INTO rp.m FROM cpu")]
    assert [(t.database, t.retention_policy, t.name) for t in into] == [
        ("db", "rp", "m"), (None, None, None), ("db", None, None), (None, "rp", "m")]


def test_continuous_query_statements_parse_and_time_their_runs():
    stmt = parse_query("CREATE CONTINUOUS QUERY c ON db RESAMPLE EVERY 30s FOR 15m BEGIN "
                       "SELECT mean(v) INTO db..m5 FROM m GROUP BY time(5m), host END"
                       ).statements[0]
    assert isinstance(stmt, ast.CreateContinuousQuery)
    assert stmt.into_text == "INTO db..m5"
    cq = continuous_query_of(stmt, "text")
    assert (cq.every_ns, cq.for_ns, cq.interval_ns) == (30 * 10 ** 9, 900 * 10 ** 9, 300 * 10 ** 9)
    minute = 60 * 10 ** 9
    assert run_range(cq, 62 * minute + 1) == (45 * minute, 60 * minute)
    text = run_statement_text(cq, 62 * minute)
    assert text.startswith("SELECT * INTO db..m5 FROM (SELECT mean(v)")
    assert text.endswith(f"WHERE time >= {45 * minute} AND time < {60 * minute} GROUP BY *")
    assert parse_query(text).statements[0].into.database == "db"
    default = continuous_query_of(parse_query(
        "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT max(v) INTO x FROM m GROUP BY time(1h) END"
    ).statements[0], "t")
    assert default.every_ns == default.for_ns == 3600 * 10 ** 9
    assert isinstance(parse_query("SHOW CONTINUOUS QUERIES").statements[0],
                      ast.ShowContinuousQueries)
    assert parse_query("DROP CONTINUOUS QUERY c ON db").statements[0] == \
        ast.DropContinuousQuery("c", "db")


@pytest.mark.parametrize("query", [
    "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT mean(v) FROM m GROUP BY time(5m) END",
    "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT mean(v) INTO x FROM m END",
])
def test_continuous_queries_need_into_and_group_by_time(query):
    with pytest.raises(ParseError):
        parse_query(query)


def test_stored_continuous_query_round_trips():
    cq = ContinuousQuery("db", "c", "q", "SELECT 1", "INTO x", 1, 0, 2, 3, 4)
    assert ContinuousQuery.from_json(cq.to_json()) == cq


def test_into_writes_are_cut_at_line_ends_under_the_message_limit():
    from query_api.influxql_hooks import message_chunks

    body = b"".join(b"m v=%di %d\n" % (i, i) for i in range(1000))
    chunks = message_chunks(body, 100)
    assert b"".join(chunks) == body
    assert all(len(c) <= 100 and c.endswith(b"\n") for c in chunks)
    assert message_chunks(b"x" * 300 + b"\n", 100) == [b"x" * 300 + b"\n"]
