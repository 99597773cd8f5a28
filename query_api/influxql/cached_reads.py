"""Statements a source may answer from a cache instead of its whole table.

A source (the query API's) may offer two optional methods; the in-memory source has neither:

- ``last_rows(db, table, fields, group_tags, lo, hi)``: the newest row of every series, when
  that row holds ``last(field)`` of every asked field for the series (else None);
- ``distinct_rows(db, table, keys)``: rows holding every combination of ``keys`` the table
  has (else None).

The statement then runs its usual code over those few rows, so its answer has the same shape
and values as over the whole table; only the statement shapes below qualify.
"""
from __future__ import annotations

import pyarrow as pa

from query_api.influxql import ast
from query_api.influxql.planner import SelectPlan


def last_only_fields(plan: SelectPlan) -> tuple[str, ...] | None:
    """The fields of a ``SELECT last(f), ... GROUP BY <tags>`` plan over all time (no WHERE,
    no GROUP BY time, no transform), else None."""
    if (not plan.aggregate or not plan.calls or plan.interval or plan.condition is not None
            or plan.transforms or plan.multi is not None or plan.aux
            or any(c.func != "last" or not c.field for c in plan.calls)):
        return None
    return tuple(dict.fromkeys(c.field for c in plan.calls))


async def cached_last_rows(source, plan: SelectPlan, db: str, table: str,
                           lo: int | None, hi: int | None) -> pa.Table | None:
    fields = last_only_fields(plan)
    last_rows = getattr(source, "last_rows", None)
    if fields is None or last_rows is None:
        return None
    return await last_rows(db, table, fields, plan.group_tags, lo, hi)


async def cached_distinct_rows(source, stmt: ast.ShowTagValues, db: str, table: str,
                               keys: list[str]) -> pa.Table | None:
    distinct_rows = getattr(source, "distinct_rows", None)
    if stmt.condition is not None or distinct_rows is None:
        return None
    return await distinct_rows(db, table, keys)
