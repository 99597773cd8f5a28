"""WHERE clauses: the time range (for pruning and GROUP BY time bounds) and the rest as SQL.

InfluxDB 1.x takes the time bounds from ``time`` comparisons ANDed at the top of the condition;
the remaining predicate filters rows. Tags compare as strings with a missing tag equal to
``''``; a comparison between incompatible types (a tag with a number, ...) is false rather
than an error, as in 1.x.
"""
from __future__ import annotations

from dataclasses import dataclass

from query_api.influxql import ast
from query_api.influxql.timeutil import InvalidTime, parse_time_literal
from query_api.tag_filter import TagFilter, both, one_column

NUMERIC_KINDS = frozenset({"float", "integer", "uinteger"})


class ConditionError(ValueError):
    """An invalid WHERE clause (reported as the statement's error)."""


@dataclass(frozen=True)
class TimeRange:
    """Inclusive bounds in ns; None when the WHERE clause sets none."""

    lower: int | None = None
    upper: int | None = None

    def intersect(self, lower: int | None, upper: int | None) -> "TimeRange":
        lo = self.lower if lower is None else (lower if self.lower is None else max(lower, self.lower))
        hi = self.upper if upper is None else (upper if self.upper is None else min(upper, self.upper))
        return TimeRange(lo, hi)

    @property
    def empty(self) -> bool:
        return self.lower is not None and self.upper is not None and self.lower > self.upper


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def is_time_ref(expr: ast.Expr) -> bool:
    expr = ast.strip_parens(expr)
    return isinstance(expr, ast.VarRef) and expr.name.lower() == "time"


def time_value(expr: ast.Expr, now_ns: int, tz: str | None) -> int:
    """Evaluate the non-time side of a time comparison to ns (strings, integers, durations,
    ``now()`` and ``+``/``-`` between them)."""
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.StringLit):
        try:
            return parse_time_literal(expr.value, tz)
        except InvalidTime as exc:
            raise ConditionError(
                "invalid operation: time and *influxql.StringLiteral are not compatible") from exc
    if isinstance(expr, ast.IntegerLit):
        return expr.value
    if isinstance(expr, ast.NumberLit):
        return int(expr.value)
    if isinstance(expr, ast.DurationLit):
        return expr.ns
    if isinstance(expr, ast.Call) and expr.name == "now" and not expr.args:
        return now_ns
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("+", "-"):
        lhs = time_value(expr.lhs, now_ns, tz)
        rhs = time_value(expr.rhs, now_ns, tz)
        return lhs + rhs if expr.op == "+" else lhs - rhs
    raise ConditionError(f"invalid operation: time and {_go_type(expr)} are not compatible")


def _go_type(expr: ast.Expr) -> str:
    names = {ast.VarRef: "*influxql.VarRef", ast.BoolLit: "*influxql.BooleanLiteral",
             ast.RegexLit: "*influxql.RegexLiteral", ast.Call: "*influxql.Call",
             ast.BinaryExpr: "*influxql.BinaryExpr"}
    return names.get(type(expr), "*influxql.Expr")


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


def split_condition(cond: ast.Expr | None, now_ns: int, tz: str | None
                    ) -> tuple[TimeRange, ast.Expr | None]:
    """Split off the time bounds ANDed at the top of ``cond``; returns (range, residual)."""
    if cond is None:
        return TimeRange(), None
    rng = TimeRange()
    residual: list[ast.Expr] = []
    for part in _conjuncts(cond):
        bounds = _time_bounds(part, now_ns, tz)
        if bounds is None:
            residual.append(part)
        else:
            rng = rng.intersect(*bounds)
    rest: ast.Expr | None = None
    for part in residual:
        rest = part if rest is None else ast.BinaryExpr("AND", rest, part)
    return rng, rest


def tag_filter(cond: ast.Expr | None) -> TagFilter:
    """Tag values the top-level ANDed ``tag = 'value'`` (or an OR of them on one tag) allow;
    which columns are tags is the loader's business (see query_api/tag_filter.py)."""
    found: TagFilter = {}
    for part in _conjuncts(cond) if cond is not None else []:
        terms = _equalities(part)
        if terms:
            found = both(found, one_column(terms))
    return found


def _equalities(expr: ast.Expr) -> list[tuple[str, str]] | None:
    expr = ast.strip_parens(expr)
    if not isinstance(expr, ast.BinaryExpr):
        return None
    if expr.op == "OR":
        left, right = _equalities(expr.lhs), _equalities(expr.rhs)
        return None if left is None or right is None else left + right
    if expr.op != "=":
        return None
    ref, lit = ast.strip_parens(expr.lhs), ast.strip_parens(expr.rhs)
    if isinstance(lit, ast.VarRef):
        ref, lit = lit, ref
    if not isinstance(ref, ast.VarRef) or not isinstance(lit, ast.StringLit) \
            or ref.type not in (None, "tag"):
        return None
    return [(ref.name, lit.value)]


def _conjuncts(expr: ast.Expr) -> list[ast.Expr]:
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.BinaryExpr) and expr.op == "AND":
        return _conjuncts(expr.lhs) + _conjuncts(expr.rhs)
    return [expr]


def _time_bounds(expr: ast.Expr, now_ns: int, tz: str | None
                 ) -> tuple[int | None, int | None] | None:
    expr = ast.strip_parens(expr)
    if not isinstance(expr, ast.BinaryExpr) or expr.op not in _FLIP or expr.op == "!=":
        return None
    if is_time_ref(expr.lhs):
        op, other = expr.op, expr.rhs
    elif is_time_ref(expr.rhs):
        op, other = _FLIP[expr.op], expr.lhs
    else:
        return None
    value = time_value(other, now_ns, tz)
    if op == "=":
        return value, value
    if op == ">":
        return value + 1, None
    if op == ">=":
        return value, None
    if op == "<":
        return None, value - 1
    return None, value


# ---- residual condition -> DataFusion SQL --------------------------------------------------


@dataclass(frozen=True)
class _Operand:
    sql: str
    kind: str  # "tag", "string", "number", "boolean", "time", "null", "regex"


def compile_condition(expr: ast.Expr, kinds: dict[str, str], now_ns: int, tz: str | None) -> str:
    """SQL boolean expression for ``expr`` over a table with columns ``kinds`` (name -> catalog
    kind). Unknown identifiers are absent tags (equal to ``''``)."""
    return _bool(expr, kinds, now_ns, tz)


def _bool(expr: ast.Expr, kinds: dict[str, str], now_ns: int, tz: str | None) -> str:
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.BinaryExpr):
        if expr.op in ("AND", "OR"):
            return (f"({_bool(expr.lhs, kinds, now_ns, tz)} {expr.op} "
                    f"{_bool(expr.rhs, kinds, now_ns, tz)})")
        if expr.op in ast.COMPARISON_OPS:
            return _comparison(expr, kinds, now_ns, tz)
    if isinstance(expr, ast.BoolLit):
        return "TRUE" if expr.value else "FALSE"
    if isinstance(expr, ast.VarRef) and kinds.get(expr.name) == "boolean":
        return f"COALESCE({quote_ident(expr.name)}, FALSE)"
    raise ConditionError(f"invalid condition expression: {_describe(expr)}")


def _describe(expr: ast.Expr) -> str:
    if isinstance(expr, ast.VarRef):
        return expr.name
    return type(expr).__name__


def _comparison(expr: ast.BinaryExpr, kinds: dict[str, str], now_ns: int, tz: str | None) -> str:
    op = expr.op
    if is_time_ref(expr.lhs) or is_time_ref(expr.rhs):
        other = expr.rhs if is_time_ref(expr.lhs) else expr.lhs
        if op in ("=~", "!~"):
            return "FALSE"
        value = time_value(other, now_ns, tz)
        lhs, rhs = ('CAST("time" AS BIGINT)', str(value))
        if not is_time_ref(expr.lhs):
            lhs, rhs = rhs, lhs
        return f"({lhs} {op} {rhs})"
    lhs = _operand(expr.lhs, kinds)
    if op in ("=~", "!~"):
        rhs_expr = ast.strip_parens(expr.rhs)
        if not isinstance(rhs_expr, ast.RegexLit):
            raise ConditionError("invalid operation: regex comparison requires a regex")
        if lhs.kind not in ("tag", "string", "null"):
            return "FALSE"
        target = "''" if lhs.kind == "null" else lhs.sql
        test = f"regexp_like({target}, {quote_string(rhs_expr.pattern)})"
        return f"COALESCE({test}, FALSE)" if op == "=~" else f"COALESCE(NOT {test}, FALSE)"
    rhs = _operand(expr.rhs, kinds)
    if lhs.kind == "null" and rhs.kind == "null":
        return "TRUE" if op in ("=", "<=", ">=") else "FALSE"
    # an absent column compares like an empty tag
    if lhs.kind == "null":
        lhs = _Operand("''", "tag")
    if rhs.kind == "null":
        rhs = _Operand("''", "tag")
    stringy = ("tag", "string")
    if (lhs.kind in stringy) != (rhs.kind in stringy):
        return "FALSE"
    if lhs.kind not in stringy and lhs.kind != rhs.kind:
        return "FALSE"
    if lhs.kind == "boolean" and op not in ("=", "!="):
        return "FALSE"
    return f"COALESCE({lhs.sql} {op} {rhs.sql}, FALSE)"


def _operand(expr: ast.Expr, kinds: dict[str, str]) -> _Operand:
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.VarRef):
        kind = kinds.get(expr.name)
        if expr.type == "tag" and kind != "tag":
            kind = None
        if expr.type == "field" and kind == "tag":
            kind = None
        if kind == "tag":
            return _Operand(f"COALESCE({quote_ident(expr.name)}, '')", "tag")
        if kind in NUMERIC_KINDS:
            return _Operand(quote_ident(expr.name), "number")
        if kind == "string":
            return _Operand(quote_ident(expr.name), "string")
        if kind == "boolean":
            return _Operand(quote_ident(expr.name), "boolean")
        return _Operand("NULL", "null")
    if isinstance(expr, ast.StringLit):
        return _Operand(quote_string(expr.value), "string")
    if isinstance(expr, ast.IntegerLit):
        return _Operand(str(expr.value), "number")
    if isinstance(expr, ast.NumberLit):
        return _Operand(repr(float(expr.value)), "number")
    if isinstance(expr, ast.BoolLit):
        return _Operand("TRUE" if expr.value else "FALSE", "boolean")
    if isinstance(expr, ast.DurationLit):
        return _Operand(str(expr.ns), "number")
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("+", "-", "*", "/", "%"):
        lhs = _operand(expr.lhs, kinds)
        rhs = _operand(expr.rhs, kinds)
        if lhs.kind != "number" or rhs.kind != "number":
            return _Operand("NULL", "number")
        if expr.op == "/":
            return _Operand(f"(CASE WHEN {rhs.sql} = 0 THEN 0.0 ELSE "
                            f"CAST({lhs.sql} AS DOUBLE) / {rhs.sql} END)", "number")
        if expr.op == "%":
            return _Operand(f"(CASE WHEN {rhs.sql} = 0 THEN 0 ELSE {lhs.sql} % {rhs.sql} END)",
                            "number")
        return _Operand(f"({lhs.sql} {expr.op} {rhs.sql})", "number")
    raise ConditionError(f"invalid condition operand: {_describe(expr)}")
