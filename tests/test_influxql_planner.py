"""InfluxQL planning: column names, wildcard expansion, validation, WHERE splitting and SQL."""
from __future__ import annotations

import pytest

from query_api.influxql import ast
from query_api.influxql.conditions import (ConditionError, TimeRange, compile_condition,
                                           split_condition)
from query_api.influxql.parser import parse_expr, parse_query
from query_api.influxql.planner import PlanError, Schema, column_names, plan_select
from query_api.influxql.timeutil import parse_time_literal

SCHEMA = Schema({"host": "tag", "region": "tag", "usage": "float", "procs": "integer",
                 "msg": "string", "ok": "boolean", "time": "time"})
NOW = 1_700_000_000_000_000_000


def plan(text: str, schema: Schema = SCHEMA):
    stmt = parse_query(text).statements[0]
    return plan_select(stmt, schema, NOW)


def names(text: str) -> list[str]:
    return [c.name for c in plan(text).columns]


def test_column_names_follow_1x():
    assert names("SELECT usage, procs FROM m") == ["usage", "procs"]
    assert names("SELECT mean(usage), mean(procs), mean(usage) FROM m") == \
        ["mean", "mean_1", "mean_2"]
    assert names("SELECT mean(usage) AS mean_1, mean(procs), mean(usage) FROM m") == \
        ["mean_1", "mean", "mean_2"]
    assert names("SELECT usage + procs, usage * 2 FROM m") == ["usage_procs", "usage"]
    assert names("SELECT max(procs) - min(procs), mean(usage) * 2 + 1 FROM m") == \
        ["max_min", "mean"]


def test_column_names_function():
    fields = [ast.Field(ast.VarRef("a")), ast.Field(ast.VarRef("a")), ast.Field(ast.VarRef("b"), "a_1")]
    assert column_names(fields) == ["a", "a_2", "a_1"]


def test_wildcards():
    assert names("SELECT * FROM m") == ["host", "msg", "ok", "procs", "region", "usage"]
    assert names("SELECT * FROM m GROUP BY host") == ["msg", "ok", "procs", "region", "usage"]
    assert names("SELECT *::field FROM m") == ["msg", "ok", "procs", "usage"]
    assert names("SELECT *::tag FROM m") == ["host", "region"]
    assert names("SELECT /o/ FROM m") == ["host", "ok", "procs", "region"]
    assert names("SELECT max(*) FROM m") == ["max_procs", "max_usage"]
    assert names("SELECT count(*) FROM m") == ["count_msg", "count_ok", "count_procs", "count_usage"]
    assert names("SELECT first(/^u/) FROM m") == ["first_usage"]


def test_raw_plan():
    p = plan("SELECT usage, host FROM m WHERE host = 'a' AND time >= '2020-01-01T00:00:00Z'")
    assert not p.aggregate
    assert p.fields_read == ("usage",)
    assert p.time_range == TimeRange(parse_time_literal("2020-01-01T00:00:00Z"), None)
    assert p.condition == parse_expr("host = 'a'")


def test_aggregate_plan():
    p = plan("SELECT max(usage), host FROM m GROUP BY time(1h, 15m), region fill(0)")
    assert p.aggregate and p.selector is not None and p.selector.func == "max"
    assert p.aux == ("host",)
    assert p.interval == 3_600_000_000_000 and p.offset == 900_000_000_000
    assert p.group_tags == ("region",)
    assert p.fill == ast.Fill("number", 0)
    p = plan("SELECT percentile(usage, 95), count(distinct(msg)) FROM m GROUP BY *")
    assert p.calls[0].percentile == 95.0 and p.calls[1].count_distinct
    assert p.group_tags == ("host", "region") and p.selector is None


def test_negative_offset_wraps_into_interval():
    assert plan("SELECT mean(usage) FROM m GROUP BY time(1h, -15m)").offset == 45 * 60 * 10 ** 9


@pytest.mark.parametrize("text, message", [
    ("SELECT usage, mean(usage) FROM m", "mixing aggregate and non-aggregate queries is not supported"),
    ("SELECT max(usage), min(usage), host FROM m",
     "mixing multiple selector functions with tags or fields is not supported"),
    ("SELECT mean(usage), host FROM m", "mixing aggregate and non-aggregate queries is not supported"),
    ("SELECT foo(usage) FROM m", "undefined function foo()"),
    ("SELECT mean() FROM m", "invalid number of arguments for mean, expected 1, got 0"),
    ("SELECT percentile(usage) FROM m", "invalid number of arguments for percentile, expected 2, got 1"),
    ("SELECT percentile(usage, 'x') FROM m", "expected float argument in percentile()"),
    ("SELECT mean(usage + 1) FROM m", "expected field argument in mean()"),
    ("SELECT mean(msg) FROM m", "unsupported mean iterator type: *query.stringInterruptIterator"),
    ("SELECT sum(ok) FROM m", "unsupported sum iterator type: *query.booleanInterruptIterator"),
    ("SELECT distinct(usage), procs FROM m",
     "aggregate function distinct() cannot be combined with other functions or fields"),
    ("SELECT usage FROM m GROUP BY time(1h)", "GROUP BY requires at least one aggregate function"),
    ("SELECT usage FROM m fill(none)", "fill(none) must be used with a function"),
    ("SELECT mean(usage) FROM m GROUP BY time(1h), time(2h)", "multiple time dimensions not allowed"),
])
def test_validation_errors(text, message):
    with pytest.raises(PlanError, match=None) as info:
        plan(text)
    assert str(info.value) == message


# ---- WHERE ------------------------------------------------------------------------------------


def test_split_condition_time_bounds():
    rng, rest = split_condition(parse_expr(
        "time > '2020-01-01T00:00:00Z' AND (host = 'a' AND time <= 1577836900000000000)"), NOW, None)
    assert rng == TimeRange(1577836800000000001, 1577836900000000000)
    assert rest == parse_expr("host = 'a'")
    rng, _ = split_condition(parse_expr("time >= now() - 1h AND '2020-01-01' > time"), NOW, None)
    assert rng == TimeRange(NOW - 3_600_000_000_000, 1577836800000000000 - 1)
    rng, _ = split_condition(parse_expr("time = 5"), NOW, None)
    assert rng == TimeRange(5, 5)
    rng, _ = split_condition(parse_expr("time > 5s AND time < 2s"), NOW, None)
    assert rng.empty


def test_split_condition_zone_and_errors():
    rng, _ = split_condition(parse_expr("time >= '2009-11-10 21:00:00'"), NOW, "Europe/Paris")
    assert rng.lower == parse_time_literal("2009-11-10T20:00:00Z")
    with pytest.raises(ConditionError, match="not compatible"):
        split_condition(parse_expr("time > 'garbage'"), NOW, None)


def test_time_under_or_stays_a_row_filter():
    rng, rest = split_condition(parse_expr("time > 5 OR host = 'a'"), NOW, None)
    assert rng == TimeRange() and rest is not None
    sql = compile_condition(rest, {"host": "tag"}, NOW, None)
    assert 'CAST("time" AS BIGINT) > 5' in sql


def test_compile_condition_types():
    kinds = {"host": "tag", "usage": "float", "msg": "string", "ok": "boolean"}
    assert compile_condition(parse_expr("host = 'a'"), kinds, NOW, None) == \
        "COALESCE(COALESCE(\"host\", '') = 'a', FALSE)"
    assert compile_condition(parse_expr("host =~ /^a/"), kinds, NOW, None) == \
        "COALESCE(regexp_like(COALESCE(\"host\", ''), '^a'), FALSE)"
    # incompatible types compare false rather than erroring
    assert compile_condition(parse_expr("host = 5"), kinds, NOW, None) == "FALSE"
    assert compile_condition(parse_expr("usage = 'x'"), kinds, NOW, None) == "FALSE"
    # an unknown identifier is an absent tag: equal to ''
    assert "''" in compile_condition(parse_expr("nosuch = ''"), kinds, NOW, None)
    assert compile_condition(parse_expr("ok = true"), kinds, NOW, None) == \
        'COALESCE("ok" = TRUE, FALSE)'
    sql = compile_condition(parse_expr("usage / 0 > 1"), kinds, NOW, None)
    assert "CASE WHEN 0 = 0 THEN 0.0" in sql
