"""InfluxQL ``DELETE`` and ``DROP SERIES`` (InfluxDB 1.x): parsed here, run as tombstones.

- ``DELETE [FROM <measurements>] [WHERE <tag conditions> [AND <time range>]]`` removes the
  matching points; at least one of FROM and WHERE is required.
- ``DROP SERIES [FROM <measurements>] [WHERE <tag conditions>]`` removes whole series, at every
  time; a time condition is an error, as in 1.x.

Tag conditions are ``=``, ``!=``, ``=~``, ``!~`` against strings or regexes, joined by AND/OR
and parentheses; fields in the condition are an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from query_api.influxql import ast
from query_api.influxql.conditions import ConditionError, split_condition
from query_api.influxql.meta import StatementError, measurements_of, resolve_database
from query_api.influxql.results import StatementResult
from query_api.influxql.source import InfluxQLSource


@dataclass(frozen=True)
class DeleteStatement:
    sources: tuple[ast.Measurement, ...]
    condition: ast.Expr | None
    drop_series: bool
    text: str = ""


class DeleteHook(Protocol):
    """Where deletes go (query_api/deletes.py's DeleteService)."""

    async def delete(self, db: str, tables: list[str] | None, min_time: int | None,
                     max_time: int | None, predicate: dict | None, source: str) -> list: ...


def parse_delete_statement(parser, drop_series: bool) -> DeleteStatement:
    """After ``DELETE`` or ``DROP SERIES``: the optional FROM and WHERE clauses."""
    start = parser.pos
    sources: tuple[ast.Measurement, ...] = ()
    if parser.accept("FROM"):
        sources = parser.parse_sources()
    condition = parser.parse_expr() if parser.accept("WHERE") else None
    if not sources and condition is None:
        raise parser.error(parser.peek(), ["FROM", "WHERE"])
    return DeleteStatement(sources, condition, drop_series, parser.text[start:parser.pos].strip())


def tag_predicate(expr: ast.Expr | None) -> dict | None:
    """The predicate tree of a tag condition (persist/tombstones.py); ConditionError otherwise."""
    if expr is None:
        return None
    if isinstance(expr, ast.ParenExpr):
        return tag_predicate(expr.expr)
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("AND", "OR"):
        return {expr.op.lower(): [tag_predicate(expr.lhs), tag_predicate(expr.rhs)]}
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("=", "!=", "<>", "=~", "!~"):
        lhs, rhs = ast.strip_parens(expr.lhs), ast.strip_parens(expr.rhs)
        if not isinstance(lhs, ast.VarRef):
            lhs, rhs = rhs, lhs
        op = "!=" if expr.op == "<>" else expr.op
        if isinstance(lhs, ast.VarRef) and lhs.name.lower() != "time":
            if op in ("=", "!=") and isinstance(rhs, ast.StringLit):
                return {"tag": lhs.name, "op": op, "value": rhs.value}
            if op in ("=~", "!~") and isinstance(rhs, ast.RegexLit):
                return {"tag": lhs.name, "op": op, "value": rhs.pattern}
    raise ConditionError("delete conditions may only compare tags with strings or regexes "
                         "(and a time range joined by AND)")


async def run_delete(stmt: DeleteStatement, db: str | None, source: InfluxQLSource, now_ns: int,
                     rp: str | None, hook: DeleteHook | None) -> StatementResult:
    if hook is None:
        return StatementResult(error="statement is not supported here: "
                                     f"{'DROP SERIES' if stmt.drop_series else 'DELETE'}")
    try:
        db_name = await resolve_database(None, db, source, rp)
        rng, rest = split_condition(stmt.condition, now_ns, None)
        if stmt.drop_series and (rng.lower is not None or rng.upper is not None):
            raise ConditionError("DROP SERIES doesn't support time in WHERE clause")
        predicate = tag_predicate(rest)
        tables = await measurements_of(stmt.sources, db_name, source) if stmt.sources else None
        if tables == []:
            return StatementResult()
        verb = "DROP SERIES" if stmt.drop_series else "DELETE"
        await hook.delete(db_name, tables, rng.lower, rng.upper, predicate, f"{verb} {stmt.text}")
    except (StatementError, ConditionError, ValueError, LookupError) as exc:
        return StatementResult(error=str(exc.args[0] if exc.args else exc))
    return StatementResult()
