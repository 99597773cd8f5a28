"""CREATE / DROP / SHOW CONTINUOUS QUERIES.

The statements only talk to a :class:`ContinuousQueryHook` (the query API's, over the
catalog); the workers run the stored queries (agents/continuous_queries.py) by sending
``run_statement_text`` (persist/continuous_queries.py, shared by both) to the query API, so a
run is an ordinary ``SELECT ... INTO``.

Timing, as InfluxDB 1.x: a continuous query runs every ``EVERY`` (default: its GROUP BY
interval), at instants aligned to the epoch; a run at instant ``t`` recomputes the windows from
``t - FOR`` (default: the larger of the interval and EVERY), truncated to the interval, up
to the window holding ``t`` (excluded, it is not complete yet).
"""
from __future__ import annotations

import time
from typing import Protocol

import pyarrow as pa

from persist.continuous_queries import ContinuousQuery, run_range, run_statement_text

__all__ = ["CQ_STATEMENTS", "ContinuousQueryHook", "continuous_query_of", "run_range",
           "run_statement_text", "run_continuous_query_statement"]
from query_api.influxql import ast
from query_api.influxql.planner import PlanError, Schema, plan_select
from query_api.influxql.results import Series, StatementResult

CQ_STATEMENTS = (ast.CreateContinuousQuery, ast.DropContinuousQuery,
                 ast.ShowContinuousQueries)


class ContinuousQueryHook(Protocol):
    """Raises ValueError or LookupError with the message the statement reports."""

    async def create(self, cq: ContinuousQuery) -> None: ...

    async def drop(self, db: str, name: str) -> None: ...

    async def list(self) -> tuple[list[str], list[ContinuousQuery]]:
        """(every database, the continuous queries)."""
        ...


def continuous_query_of(stmt: ast.CreateContinuousQuery, text: str) -> ContinuousQuery:
    """The stored form of a CREATE statement; raises PlanError when 1.x would refuse it."""
    plan = plan_select(stmt.select, Schema({}), time.time_ns())
    if not plan.aggregate or not plan.interval:
        raise PlanError("continuous query requires a GROUP BY time() clause and an "
                        "aggregate function")
    if plan.time_range.lower is not None or plan.time_range.upper is not None:
        raise PlanError("continuous queries cannot have a time range in their WHERE clause")
    every = stmt.every or plan.interval
    for_ = stmt.for_ or max(plan.interval, every)
    if stmt.for_ and stmt.for_ < plan.interval:
        raise PlanError(f"FOR duration must be >= GROUP BY time duration: must be a minimum "
                        f"of {_duration(plan.interval)}, got {_duration(stmt.for_)}")
    return ContinuousQuery(database=stmt.database, name=stmt.name, query=text,
                           source_text=stmt.source_text, into_text=stmt.into_text,
                           interval_ns=plan.interval, offset_ns=plan.offset, every_ns=every,
                           for_ns=for_, created_ms=time.time_ns() // 1_000_000)


def _duration(ns: int) -> str:
    for unit, size in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


async def run_continuous_query_statement(stmt: ast.Statement, db: str | None,
                                         hook: ContinuousQueryHook | None,
                                         text: str | None = None) -> StatementResult:
    if hook is None:
        return StatementResult(error="statement is not supported: continuous queries")
    try:
        if isinstance(stmt, ast.CreateContinuousQuery):
            await hook.create(continuous_query_of(stmt, text or _create_text(stmt)))
            return StatementResult()
        if isinstance(stmt, ast.DropContinuousQuery):
            await hook.drop(stmt.database, stmt.name)
            return StatementResult()
        databases, queries = await hook.list()
    except (ValueError, LookupError) as exc:
        return StatementResult(error=str(exc.args[0] if exc.args else exc))
    series = []
    for database in databases:
        mine = [q for q in queries if q.database == database]
        table = pa.table({"name": pa.array([q.name for q in mine], pa.string()),
                          "query": pa.array([q.query for q in mine], pa.string())})
        series.append(Series(name=database, columns=["name", "query"], table=table,
                             has_time=False))
    return StatementResult(series=series)


def _create_text(stmt: ast.CreateContinuousQuery) -> str:
    resample = ""
    if stmt.every or stmt.for_:
        resample = " RESAMPLE" + (f" EVERY {_duration(stmt.every)}" if stmt.every else "") + (
            f" FOR {_duration(stmt.for_)}" if stmt.for_ else "")
    return (f"CREATE CONTINUOUS QUERY {stmt.name} ON {stmt.database}{resample} BEGIN "
            f"{stmt.select_text} END")
