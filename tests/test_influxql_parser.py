"""InfluxQL parser: statements, expressions, literals and InfluxDB 1.x error messages."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_api.influxql import ast
from query_api.influxql.lexer import DURATION, INTEGER, NUMBER, duration_ns, scan
from query_api.influxql.parser import ParseError, parse_expr, parse_query


def one(text: str) -> ast.Statement:
    parsed = parse_query(text)
    assert len(parsed.statements) == 1
    return parsed.statements[0]


def error_of(text: str) -> str:
    with pytest.raises(ParseError) as info:
        parse_query(text)
    return str(info.value)


# ---- SELECT ---------------------------------------------------------------------------------


def test_select_clauses_in_order():
    stmt = one("SELECT mean(v) AS m, max(v) FROM cpu WHERE host = 'a' AND time > now() - 1h "
               "GROUP BY time(10m, 1m), host fill(previous) ORDER BY time DESC "
               "LIMIT 5 OFFSET 2 SLIMIT 3 SOFFSET 1 tz('Europe/Paris')")
    assert isinstance(stmt, ast.SelectStatement)
    assert [f.name for f in stmt.fields] == ["m", "max"]
    assert stmt.sources == (ast.Measurement(name="cpu"),)
    assert stmt.dimensions[0] == ast.Call("time", (ast.DurationLit(600_000_000_000),
                                                   ast.DurationLit(60_000_000_000)))
    assert stmt.dimensions[1] == ast.VarRef("host")
    assert stmt.fill == ast.Fill("previous") and stmt.fill_given
    assert stmt.descending
    assert (stmt.limit, stmt.offset, stmt.slimit, stmt.soffset) == (5, 2, 3, 1)
    assert stmt.location == "Europe/Paris"


def test_fill_number_and_negative():
    assert one("SELECT mean(v) FROM m GROUP BY time(1m) fill(-1)").fill == ast.Fill("number", -1)
    assert one("SELECT mean(v) FROM m GROUP BY time(1m) fill(2.5)").fill == ast.Fill("number", 2.5)
    assert one("SELECT mean(v) FROM m GROUP BY time(1m) fill(none)").fill == ast.Fill("none")
    assert error_of("SELECT mean(v) FROM m GROUP BY time(1m) fill(foo)") == \
        "expected number argument in fill()"


@pytest.mark.parametrize("text, expected", [
    ("cpu", ast.Measurement(name="cpu")),
    ("db..cpu", ast.Measurement(database="db", name="cpu")),
    ('"db"."rp"."cpu"', ast.Measurement(database="db", retention_policy="rp", name="cpu")),
    ("rp.cpu", ast.Measurement(retention_policy="rp", name="cpu")),
    ("/cpu.*/", ast.Measurement(regex="cpu.*")),
    ("db../cpu/", ast.Measurement(database="db", regex="cpu")),
    ('"my measurement"', ast.Measurement(name="my measurement")),
])
def test_sources(text, expected):
    assert one(f"SELECT v FROM {text}").sources == (expected,)


def test_wildcards_and_type_hints():
    stmt = one("SELECT *, *::field, v::integer, host::tag FROM m")
    exprs = [f.expr for f in stmt.fields]
    assert exprs == [ast.Wildcard(), ast.Wildcard("field"), ast.VarRef("v", "integer"),
                     ast.VarRef("host", "tag")]


def test_distinct_forms():
    assert one("SELECT DISTINCT v FROM m").fields[0].expr == ast.Call("distinct", (ast.VarRef("v"),))
    inner = one("SELECT count(distinct(v)) FROM m").fields[0].expr
    assert inner == ast.Call("count", (ast.Call("distinct", (ast.VarRef("v"),)),))


def test_function_names_are_lower_cased():
    assert one("SELECT MEAN(v) FROM m").fields[0].name == "mean"


def test_multiple_statements_and_texts():
    parsed = parse_query("SELECT v FROM a; SHOW DATABASES;")
    assert len(parsed.statements) == 2
    assert parsed.texts == ("SELECT v FROM a", "SHOW DATABASES")
    assert parse_query("").statements == ()


def test_comments_are_skipped():
    assert one("SELECT v -- comment\nFROM /* block */ m").sources == (ast.Measurement(name="m"),)


# ---- expressions ----------------------------------------------------------------------------


def test_precedence_and_associativity():
    assert parse_expr("a + b * c") == ast.BinaryExpr(
        "+", ast.VarRef("a"), ast.BinaryExpr("*", ast.VarRef("b"), ast.VarRef("c")))
    assert parse_expr("a - b - c") == ast.BinaryExpr(
        "-", ast.BinaryExpr("-", ast.VarRef("a"), ast.VarRef("b")), ast.VarRef("c"))
    expr = parse_expr("a = 1 OR b = 2 AND c = 3")
    assert expr.op == "OR" and expr.rhs.op == "AND"
    expr = parse_expr("(a = 1 OR b = 2) AND c =~ /x/")
    assert expr.op == "AND" and isinstance(expr.lhs, ast.ParenExpr)
    assert expr.rhs == ast.BinaryExpr("=~", ast.VarRef("c"), ast.RegexLit("x"))


def test_literals():
    assert parse_expr(r"'it\'s'") == ast.StringLit("it's")
    assert parse_expr("-5") == ast.IntegerLit(-5)
    assert parse_expr("-1.5") == ast.NumberLit(-1.5)
    assert parse_expr("true") == ast.BoolLit(True)
    assert parse_expr("1h30m") == ast.DurationLit(5_400_000_000_000)
    assert parse_expr("-x") == ast.BinaryExpr("*", ast.IntegerLit(-1), ast.VarRef("x"))
    assert parse_expr(r"host =~ /a\/b/") == ast.BinaryExpr("=~", ast.VarRef("host"),
                                                            ast.RegexLit("a/b"))
    assert parse_expr("now()") == ast.Call("now", ())
    assert parse_expr("x <> 1").op == "!="


@pytest.mark.parametrize("text, ns", [("1ns", 1), ("5u", 5_000), ("5µ", 5_000),
                                      ("3ms", 3_000_000), ("2s", 2_000_000_000),
                                      ("1m", 60_000_000_000), ("1h", 3_600_000_000_000),
                                      ("1d", 86_400_000_000_000), ("1w", 604_800_000_000_000)])
def test_duration_units(text, ns):
    tok = scan(text, 0)
    assert tok.kind == DURATION and duration_ns(tok.lit) == ns


@given(st.integers(min_value=0, max_value=10 ** 6),
       st.sampled_from(["ns", "u", "ms", "s", "m", "h", "d", "w"]))
def test_duration_roundtrip(value, unit):
    scale = {"ns": 1, "u": 10 ** 3, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9,
             "h": 3600 * 10 ** 9, "d": 86400 * 10 ** 9, "w": 7 * 86400 * 10 ** 9}[unit]
    assert parse_expr(f"{value}{unit}") == ast.DurationLit(value * scale)


@given(st.integers(min_value=0, max_value=2 ** 63 - 1))
def test_integer_literals(value):
    assert scan(str(value), 0).kind == INTEGER
    assert parse_expr(str(value)) == ast.IntegerLit(value)


def test_number_tokens():
    assert scan("1.5", 0).kind == NUMBER and scan(".5", 0).kind == NUMBER


# ---- SHOW -----------------------------------------------------------------------------------


def test_show_statements():
    assert one("SHOW DATABASES") == ast.ShowDatabases()
    assert one("SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu/ LIMIT 2") == \
        ast.ShowMeasurements("db", "=~", "cpu", None, 2, 0)
    assert one("SHOW MEASUREMENTS WITH MEASUREMENT = cpu").name_value == "cpu"
    assert one("SHOW TAG KEYS FROM cpu") == ast.ShowTagKeys(None, (ast.Measurement(name="cpu"),))
    tv = one("SHOW TAG VALUES FROM cpu WITH KEY IN (host, region) WHERE host = 'a'")
    assert tv.key_op == "IN" and tv.key_values == ("host", "region") and tv.condition
    assert one("SHOW TAG VALUES WITH KEY =~ /h/").key_values == ("h",)
    assert one("SHOW FIELD KEYS ON db FROM m") == ast.ShowFieldKeys("db", (ast.Measurement(name="m"),))
    assert isinstance(one("SHOW SERIES FROM cpu WHERE host = 'a'"), ast.ShowSeries)
    assert one("SHOW RETENTION POLICIES ON db") == ast.ShowRetentionPolicies("db")
    assert isinstance(one("SHOW USERS"), ast.UnsupportedStatement)
    assert isinstance(one("DROP USER bob"), ast.UnsupportedStatement)


# ---- errors (texts and positions as InfluxDB 1.x prints them) -------------------------------


@pytest.mark.parametrize("text, message", [
    ("SELEC * FROM cpu", "found SELEC, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, "
                         "GRANT, REVOKE, ALTER, SET, KILL at line 1, char 1"),
    ("SELECT * FROM cpu WHERE", "found EOF, expected identifier, string, number, bool at line 1, "
                                "char 25"),
    ("SELECT * FROM", "found EOF, expected identifier at line 1, char 15"),
    ("SELECT FROM cpu", "found FROM, expected identifier, string, number, bool at line 1, char 8"),
    ("SELECT * FROM cpu LIMIT x", "found x, expected integer at line 1, char 25"),
    ("SELECT * FROM cpu LIMIT 'x'", "found x, expected integer at line 1, char 24"),
    ("SELECT * FROM cpu LIMIT 10s", "found 10s, expected integer at line 1, char 25"),
    ("SELECT * FROM cpu LIMIT\n x", "found x, expected integer at line 2, char 2"),
    ("SELECT * FROM cpu WHERE host = 'a", "found a, expected identifier, string, number, bool "
                                          "at line 1, char 31"),
    ("SELECT * FROM cpu WHERE host = 'a' GROUP", "found EOF, expected BY at line 1, char 42"),
    ("SHOW TAG VALUES FROM cpu", "found EOF, expected WITH at line 1, char 26"),
    ("SELECT v FROM m tz('Mars/Olympus')", "unable to find time zone Mars/Olympus"),
    ("SELECT v FROM m x", "found x, expected ; at line 1, char 17"),
])
def test_error_messages(text, message):
    assert error_of(text) == message


def test_show_unknown_kind_lists_expected():
    assert error_of("SHOW FOO").startswith("found FOO, expected CONTINUOUS, DATABASES")


# ---- bound parameters -----------------------------------------------------------------------


def test_bound_parameters():
    stmt = parse_query("SELECT v FROM m WHERE host = $h AND v > $v AND n < $n AND host =~ $r "
                       "AND time > now() - $d", {"h": "a", "v": 1.5, "n": 3,
                                                 "r": {"regex": "^a"}, "d": {"duration": "1h"}}
                       ).statements[0]
    text = repr(stmt.condition)
    for part in ("StringLit(value='a')", "NumberLit(value=1.5)", "IntegerLit(value=3)",
                 "RegexLit(pattern='^a')", "DurationLit(ns=3600000000000)"):
        assert part in text
    assert error_of("SELECT v FROM m WHERE host = $h") == "missing parameter: h"
    with pytest.raises(ParseError, match="expected regex"):
        parse_query("SELECT v FROM m WHERE host =~ $h", {"h": "a"})


def test_management_statements():
    from query_api.influxql import management as m

    assert one("CREATE DATABASE a") == m.CreateDatabase("a")
    assert one('CREATE DATABASE "b" WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME x') == \
        m.CreateDatabase("b", 86_400_000_000_000, True, 1, 3_600_000_000_000, "x")
    assert one("CREATE DATABASE c WITH DURATION INF") == m.CreateDatabase("c", None, True)
    assert one("DROP DATABASE a") == m.DropDatabase("a")
    assert one('DROP MEASUREMENT "cpu"') == m.DropMeasurement("cpu")
    assert m.go_duration(86_400_000_000_000) == "24h0m0s"
    assert m.go_duration(90 * 60 * 10**9) == "1h30m0s" and m.go_duration(None) == "0s"
    assert [m.go_duration(m.shard_group_duration(p)) for p in (None, 3_600 * 10**9,
                                                                3 * 86_400 * 10**9,
                                                                400 * 86_400 * 10**9)] == \
        ["168h0m0s", "1h0m0s", "24h0m0s", "168h0m0s"]
