"""Entry points: run an InfluxQL query against an :class:`InfluxQLSource`.

``execute_influxql`` answers with InfluxDB 1.x's ``/query`` JSON body. A syntax error fails
the whole request (``{"error": "error parsing query: ..."}``, HTTP 400 in 1.x); any other error
belongs to its statement (``{"statement_id": n, "error": ...}``, HTTP 200) and, as in 1.x, the
statements after it are not executed (``"error": "not executed"``).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from query_api.influxql import ast, management, meta, small_select
from query_api.influxql.cached_reads import cached_newest_rows
from query_api.influxql.conditions import ConditionError, tag_filter
from query_api.influxql.deletes import DeleteHook, DeleteStatement, run_delete
from query_api.influxql.expressions import ExpressionError
from query_api.influxql.meta import StatementError, resolve_database
from query_api.influxql.parser import ParseError, parse_query
from query_api.influxql.planner import PlanError, Schema, plan_select
from query_api.influxql.results import Series, SlicedSeries, StatementResult, query_json
from query_api.influxql.select import (TIME, ExecutionError, MeasurementResult, read_range,
                                       run_aggregate, run_raw, run_raw_transform)
from query_api.influxql.source import InfluxQLSource
from query_api.influxql.continuous import (CQ_STATEMENTS, ContinuousQueryHook,
                                           run_continuous_query_statement)
from query_api.influxql.into import WriteHook, run_into
from query_api.influxql.small_select import run_small
from query_api.influxql.subquery import has_subquery, run_with_subquery
from query_api.influxql.timeutil import UnknownTimeZone

#: A measurement of at most this many rows is computed on the event loop: handing it to a
#: thread and back costs more than the work, and on a busy machine much more.
INLINE_ROWS = 20_000

STATEMENT_ERRORS = (StatementError, PlanError, ConditionError, ExecutionError, ExpressionError,
                    UnknownTimeZone)


@dataclass(frozen=True)
class QueryTarget:
    """What the v3 endpoint checks before running a query."""

    statement_count: int
    databases: tuple[str, ...]   # databases named in the text (FROM db.rp.m, ON db), in order

    @property
    def database(self) -> str | None:
        return self.databases[0] if self.databases else None


class SubscriptionHook(Protocol):
    """Where CREATE/DROP/SHOW SUBSCRIPTIONS go (the query API passes one over its catalog).
    Methods raise ValueError or LookupError with the message the statement reports."""

    async def create_subscription(self, db: str, rp: str, name: str, mode: str,
                                  destinations: list[str]) -> None: ...

    async def drop_subscription(self, db: str, rp: str, name: str) -> None: ...

    async def list_subscriptions(self) -> list[tuple[str, str, str, str, list[str]]]:
        """(database, retention policy, name, mode, destinations), sorted."""
        ...


def query_target(query: str) -> QueryTarget:
    """Count the statements and list the databases the text names; raises ParseError."""
    parsed = parse_query(query)
    named: list[str] = []
    for stmt in parsed.statements:
        if isinstance(stmt, ast.SelectStatement):
            names = [m.database for m in stmt.sources if m.database]
        else:
            names = [getattr(stmt, "database", None)] if getattr(stmt, "database", None) else []
        for n in names:
            if n not in named:
                named.append(n)
    return QueryTarget(len(parsed.statements), tuple(named))


async def execute_influxql(query: str, db: str | None, source: InfluxQLSource, *, now_ns: int,
                           epoch: str | None = None, rp: str | None = None,
                           params: dict[str, Any] | None = None,
                           subscriptions: SubscriptionHook | None = None,
                           admin: management.DatabaseAdmin | None = None,
                           deletes: DeleteHook | None = None,
                           writes: WriteHook | None = None,
                           continuous_queries: ContinuousQueryHook | None = None
                           ) -> dict[str, Any]:
    """Run every statement of ``query``; the InfluxDB 1.x ``/query`` response body.

    ``db``/``rp`` are the request's defaults for statements that name none, ``epoch`` turns
    times into integers (``ns``, ``u``/``µ``, ``ms``, ``s``, ``m``, ``h``), ``params`` binds
    ``$name`` placeholders, ``now_ns`` is the value of ``now()`` and ``subscriptions`` manages
    subscriptions (without it their statements are not supported); ``admin`` runs CREATE/DROP
    DATABASE and DROP MEASUREMENT (likewise); ``writes`` takes the points of ``SELECT ...
    INTO`` and ``continuous_queries`` stores continuous queries (likewise)."""
    try:
        parsed = parse_query(query, params)
    except ParseError as exc:
        return {"error": f"error parsing query: {exc}"}
    results: list[StatementResult] = []
    for stmt in parsed.statements:
        if results and results[-1].error is not None:
            results.append(StatementResult(error="not executed"))
            continue
        if isinstance(stmt, DeleteStatement):
            results.append(await run_delete(stmt, db, source, now_ns, rp, deletes))
            continue
        results.append(await run_statement(stmt, db, source, now_ns, rp, subscriptions, admin,
                                           writes, continuous_queries))
    return query_json(results, epoch or None)


async def run_statement(stmt: ast.Statement, db: str | None, source: InfluxQLSource,
                        now_ns: int, rp: str | None = None,
                        subscriptions: SubscriptionHook | None = None,
                        admin: management.DatabaseAdmin | None = None,
                        writes: WriteHook | None = None,
                        continuous_queries: ContinuousQueryHook | None = None
                        ) -> StatementResult:
    """One statement's result; its errors become the result's ``error``."""
    if isinstance(stmt, management.MANAGEMENT_STATEMENTS):
        return await management.run_management(stmt, db, admin)
    if isinstance(stmt, ast.ShowRetentionPolicies) and admin is not None:
        return await management.show_retention_policies(stmt.database, db, admin)
    if isinstance(stmt, (ast.CreateSubscription, ast.DropSubscription, ast.ShowSubscriptions)):
        return await run_subscription_statement(stmt, subscriptions)
    if isinstance(stmt, CQ_STATEMENTS):
        return await run_continuous_query_statement(stmt, db, continuous_queries)
    try:
        if isinstance(stmt, ast.SelectStatement) and stmt.into is not None:
            return await run_into(stmt, db, source, now_ns, rp, writes, run_select)
        if isinstance(stmt, ast.SelectStatement):
            return await run_select(stmt, db, source, now_ns, rp)
        if isinstance(stmt, ast.ShowDatabases):
            return await meta.show_databases(source)
        if isinstance(stmt, ast.ShowRetentionPolicies):
            return await meta.show_retention_policies(stmt, db, source)
        if isinstance(stmt, ast.ShowMeasurements):
            return await meta.show_measurements(stmt, db, source, now_ns)
        if isinstance(stmt, ast.ShowTagKeys):
            return await meta.show_tag_keys(stmt, db, source, now_ns)
        if isinstance(stmt, ast.ShowTagValues):
            return await meta.show_tag_values(stmt, db, source, now_ns)
        if isinstance(stmt, ast.ShowFieldKeys):
            return await meta.show_field_keys(stmt, db, source)
        if isinstance(stmt, ast.ShowSeries):
            return await meta.show_series(stmt, db, source, now_ns)
        if isinstance(stmt, ast.UnsupportedStatement):
            return StatementResult(error=f"statement is not supported: {stmt.text}")
        return StatementResult(error="statement is not supported")
    except STATEMENT_ERRORS as exc:
        return StatementResult(error=str(exc))


async def run_subscription_statement(stmt: ast.Statement, hook: SubscriptionHook | None
                                     ) -> StatementResult:
    """CREATE/DROP SUBSCRIPTION answer nothing but errors; SHOW SUBSCRIPTIONS one series per
    database (columns retention_policy, name, mode, destinations), as InfluxDB 1.x does."""
    if hook is None:
        return StatementResult(error="statement is not supported: subscriptions")
    try:
        if isinstance(stmt, ast.CreateSubscription):
            await hook.create_subscription(stmt.database, stmt.retention_policy, stmt.name,
                                           stmt.mode, list(stmt.destinations))
            return StatementResult()
        if isinstance(stmt, ast.DropSubscription):
            await hook.drop_subscription(stmt.database, stmt.retention_policy, stmt.name)
            return StatementResult()
        rows = await hook.list_subscriptions()
    except (ValueError, LookupError) as exc:
        return StatementResult(error=str(exc.args[0] if exc.args else exc))
    series, columns = [], ["retention_policy", "name", "mode", "destinations"]
    for database in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == database]
        table = pa.table({"retention_policy": [r[1] for r in mine], "name": [r[2] for r in mine],
                          "mode": [r[3] for r in mine],
                          "destinations": pa.array([list(r[4]) for r in mine], pa.list_(pa.string()))})
        series.append(Series(name=database, columns=columns, table=table, has_time=False))
    return StatementResult(series=series)


async def _sources(stmt: ast.SelectStatement, db: str | None, source: InfluxQLSource,
                   rp: str | None) -> list[tuple[str, str]]:
    """(database, measurement) pairs of the FROM clause, sorted by measurement name."""
    pairs: dict[tuple[str, str], None] = {}
    for m in stmt.sources:
        name = await resolve_database(m.database, db, source, m.retention_policy or rp)
        for table in await meta.measurements_of((m,), name, source):
            pairs[(name, table)] = None
    return sorted(pairs, key=lambda p: (p[1], p[0]))


async def run_select(stmt: ast.SelectStatement, db: str | None, source: InfluxQLSource,
                     now_ns: int, rp: str | None = None) -> StatementResult:
    if has_subquery(stmt):
        return await run_with_subquery(stmt, db, source, now_ns, rp, run_select)
    prefetch = getattr(source, "prefetch", None)
    if prefetch is None:
        return await _run_select(stmt, db, source, now_ns, rp)
    target = _single_target(stmt, db, rp)
    if target is not None:
        await prefetch(*target)  # the statement's catalog reads in one round trip
    try:
        return await _run_select(stmt, db, source, now_ns, rp)
    finally:
        source.forget()


def _single_target(stmt: ast.SelectStatement, db: str | None, rp: str | None
                   ) -> tuple[str, str] | None:
    """(database, measurement) of a FROM clause naming one measurement (as
    :func:`resolve_database` names the database), else None."""
    if len(stmt.sources) != 1:
        return None
    m = stmt.sources[0]
    if not isinstance(m, ast.Measurement) or m.regex is not None or not m.name:
        return None
    name = m.database or db
    policy = m.retention_policy or rp
    if not name:
        return None
    if policy and policy not in ("autogen", "default"):
        name = f"{name}/{policy}"
    return name, m.name


async def _run_select(stmt: ast.SelectStatement, db: str | None, source: InfluxQLSource,
                      now_ns: int, rp: str | None = None) -> StatementResult:
    targets = await _sources(stmt, db, source, rp)
    kinds_of: dict[tuple[str, str], dict[str, str]] = {}
    union: dict[str, str] = {}
    for target in targets:
        kinds = dict((await source.schema(*target)).columns)
        kinds_of[target] = kinds
        for name, kind in kinds.items():
            union.setdefault(name, kind)
    plan = plan_select(stmt, Schema(union), now_ns)
    if plan.time_range.empty:
        return StatementResult(tz=plan.location)
    lo, hi = read_range(plan, now_ns)
    series: list[Series] = []
    columns = [plan.time_name] + [c.name for c in plan.columns]
    tags = tag_filter(plan.condition)
    small_shape = small_select.applies(plan)
    for target in targets:
        table = await cached_newest_rows(source, plan, *target, lo, hi)  # a covering cache
        if table is None:
            rng = (lo, hi) if lo is not None or hi is not None else None
            narrow = getattr(source, "load_columns", None) if small_shape else None
            table = (await narrow(*target, rng, tags, small_select.columns_read(plan))
                     if narrow is not None else await source.load(*target, rng, tags))
        if table.num_rows == 0:
            continue
        runner = (run_aggregate if plan.aggregate else
                  run_raw_transform if plan.transforms else run_raw)
        if table.num_rows <= INLINE_ROWS:  # a thread hop costs more than the work
            small = run_small(plan, table, kinds_of[target], now_ns) if small_shape else False
            result = (small if small is not False
                      else runner(plan, table, kinds_of[target], now_ns))
        else:
            result = await asyncio.to_thread(runner, plan, table, kinds_of[target], now_ns)
        if result is not None:
            # SLIMIT/SOFFSET count the series of each measurement separately, as 1.x does
            found = _series_of(target[1], result, columns)[plan.soffset:]
            series.extend(found[:plan.slimit] if plan.slimit else found)
    if plan.descending:
        series = _reverse_measurements(series)
    return StatementResult(series=series, tz=plan.location)


def _reverse_measurements(series: list[Series]) -> list[Series]:
    """Under ORDER BY time DESC, measurements come in reverse name order too (each
    measurement's series are already in descending order)."""
    groups: dict[str | None, list[Series]] = {}
    for s in series:
        groups.setdefault(s.name, []).append(s)
    out: list[Series] = []
    for name in reversed(list(groups)):
        out.extend(groups[name])
    return out


def _series_of(name: str, result: MeasurementResult, columns: list[str]) -> list[Series]:
    table = result.table
    ngroups = len(result.group_tags)
    values = table.select([TIME] + [c for c in table.column_names if c.startswith("__o")])
    bounds = list(result.starts) + [table.num_rows]
    firsts = pa.array(bounds[:-1], pa.int64())
    tag_values = [table.column(i).take(firsts).to_pylist() for i in range(ngroups)]
    out = []
    for k, (begin, end) in enumerate(zip(bounds, bounds[1:])):
        tags = None
        if ngroups:
            tags = {tag: tag_values[i][k] for i, tag in enumerate(result.group_tags)}
        out.append(SlicedSeries(name, columns, values, begin, end - begin, tags))
    return out
