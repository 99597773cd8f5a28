"""``SELECT ... FROM (SELECT ...)``: the inner statement's result becomes the outer one's data.

The inner statement runs first (recursively, so subqueries nest); each measurement of its
result becomes an Arrow table -- ``time``, the inner GROUP BY tags as tags, the inner output
columns as fields (rows whose values are all null are no points, as in 1.x) -- in a
:class:`MemorySource`, and the outer statement runs over that source. As in 1.x, an outer
time range also bounds the inner statement, and the outer GROUP BY tags group it too.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Awaitable, Callable

import pyarrow as pa
import pyarrow.compute as pc

from influent.model import field_type_of
from persist.catalog import TableSchema
from query_api.influxql import ast
from query_api.influxql.conditions import split_condition
from query_api.influxql.planner import PlanError
from query_api.influxql.results import Series, StatementResult
from query_api.influxql.source import InfluxQLSource, MemorySource

SUBQUERY_DB = "subquery"

RunSelect = Callable[[ast.SelectStatement, "str | None", InfluxQLSource, int, "str | None"],
                     Awaitable[StatementResult]]


def has_subquery(stmt: ast.SelectStatement) -> bool:
    return any(isinstance(m, ast.Subquery) for m in stmt.sources)


def _bounded(inner: ast.SelectStatement, outer: ast.SelectStatement, now_ns: int
             ) -> ast.SelectStatement:
    """``inner`` with the outer statement's time bounds ANDed to its condition."""
    rng, _ = split_condition(outer.condition, now_ns, outer.location)
    cond = inner.condition
    for op, bound in ((">=", rng.lower), ("<=", rng.upper)):
        if bound is None:
            continue
        term = ast.BinaryExpr(op, ast.VarRef("time"), ast.IntegerLit(bound))
        cond = term if cond is None else ast.BinaryExpr("AND", ast.ParenExpr(cond), term)
    dims = list(inner.dimensions)
    has_all = any(isinstance(ast.strip_parens(d), ast.Wildcard) for d in dims)
    named = {ast.strip_parens(d).name for d in dims if isinstance(ast.strip_parens(d), ast.VarRef)}
    for d in outer.dimensions:  # 1.x groups the inner statement by the outer GROUP BY tags
        d = ast.strip_parens(d)
        if isinstance(d, ast.VarRef) and not has_all and d.name not in named:
            dims.append(d)
            named.add(d.name)
    return replace(inner, condition=cond, dimensions=tuple(dims))



def _series_table(s: Series, tag_names: list[str]) -> pa.Table:
    table = s.table
    columns = {"time": table.column(0).cast(pa.int64()).cast(pa.timestamp("ns"))}
    for tag in tag_names:
        value = (s.tags or {}).get(tag, "")
        columns[tag] = pa.repeat(pa.scalar(value, pa.string()), table.num_rows)
    for i, name in enumerate(s.columns[1:], start=1):
        col = table.column(i)
        if pa.types.is_null(col.type):
            col = col.cast(pa.float64())
        if name not in columns:
            columns[name] = col
    return pa.table(columns)


def result_source(result: StatementResult) -> MemorySource:
    """The inner result as a database of one table per measurement."""
    source = MemorySource()
    source.add_database(SUBQUERY_DB)
    by_name: dict[str, list[Series]] = {}
    for s in result.series:
        if s.has_time:
            by_name.setdefault(s.name or "", []).append(s)
    for name, series in by_name.items():
        tag_names = sorted({t for s in series for t in (s.tags or {})})
        tables = [_series_table(s, tag_names) for s in series]
        table = pa.concat_tables(tables, promote_options="permissive")
        fields = [c for c in table.column_names if c != "time" and c not in tag_names]
        if fields:  # rows with no value at all are no points
            present = None
            for f in fields:
                valid = pc.is_valid(table.column(f))
                present = valid if present is None else pc.or_(present, valid)
            table = table.filter(present)
        kinds = {"time": "time", **{t: "tag" for t in tag_names}}
        kinds.update({f: field_type_of(table.schema.field(f).type) for f in fields})
        source.add_table(SUBQUERY_DB, name, table, TableSchema(kinds))
    return source


async def run_with_subquery(stmt: ast.SelectStatement, db: str | None,
                            source: InfluxQLSource, now_ns: int, rp: str | None,
                            run_select: RunSelect) -> StatementResult:
    """Run the subquery, then ``stmt`` over its result."""
    if len(stmt.sources) != 1 or not isinstance(stmt.sources[0], ast.Subquery):
        raise PlanError("a subquery must be the only source of its SELECT")
    inner = _bounded(stmt.sources[0].statement, stmt, now_ns)
    result = await run_select(inner, db, source, now_ns, rp)
    if result.error is not None:
        return result
    inner_source = result_source(result)
    names = await inner_source.tables(SUBQUERY_DB)
    outer = replace(stmt, sources=tuple(ast.Measurement(name=n, database=SUBQUERY_DB)
                                        for n in names) or (
        ast.Measurement(name="__none", database=SUBQUERY_DB),))
    if not names:
        return StatementResult(tz=stmt.location)
    return await run_select(outer, SUBQUERY_DB, inner_source, now_ns, None)
