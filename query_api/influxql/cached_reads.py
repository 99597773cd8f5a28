"""Statements a source may answer from a cache of newest rows instead of its whole table.

A source (the query API's) may offer two optional methods; the in-memory source has neither:

- ``newest_rows(db, table, wanted)``: for every group of ``wanted.group_tags``, at least its
  ``wanted.per_group`` newest rows (with every column), when a cache holds them all and no
  older row could change the statement's answer (see :class:`NewestRows`); else None;
- ``distinct_rows(db, table, keys)``: rows holding every combination of ``keys`` the table
  has (else None).

The statement then runs its usual code over those few rows, so its answer has the same shape
and values as over the whole table. Two shapes qualify, both over all time (no WHERE):
``SELECT last(f), ... GROUP BY <tags>`` (``last(*)``) and TSBS's lastpoint ``SELECT ... GROUP BY
<tags> ORDER BY time DESC LIMIT n``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from query_api.influxql import ast
from query_api.influxql.planner import SelectPlan


@dataclass(frozen=True)
class NewestRows:
    """What a statement needs: per group the ``per_group`` newest rows. ``every_field``: each
    of those rows must hold every one of ``fields`` (``last()``: then no older row holds a
    later value); otherwise at least one of them (a raw row is shown only if it has one, so a
    row without any would make the statement reach for an older row)."""

    group_tags: tuple[str, ...]
    per_group: int
    fields: tuple[str, ...]
    every_field: bool
    all_columns: bool  # the statement may read any column (raw SELECT)
    lo: int | None
    hi: int | None


def newest_rows_wanted(plan: SelectPlan, lo: int | None, hi: int | None) -> NewestRows | None:
    if (plan.interval or plan.condition is not None or plan.transforms or plan.multi is not None
            or plan.aux):
        return None
    if plan.aggregate:
        if not plan.calls or any(c.func != "last" or not c.field for c in plan.calls):
            return None
        fields = tuple(dict.fromkeys(c.field for c in plan.calls))
        return NewestRows(plan.group_tags, 1, fields, True, False, lo, hi)
    if plan.descending and plan.limit and plan.fields_read:
        return NewestRows(plan.group_tags, plan.limit + plan.offset_rows, plan.fields_read,
                          False, True, lo, hi)
    return None


async def cached_newest_rows(source, plan: SelectPlan, db: str, table: str,
                             lo: int | None, hi: int | None) -> pa.Table | None:
    newest_rows = getattr(source, "newest_rows", None)
    wanted = newest_rows_wanted(plan, lo, hi) if newest_rows is not None else None
    return None if wanted is None else await newest_rows(db, table, wanted)


async def cached_distinct_rows(source, stmt: ast.ShowTagValues, db: str, table: str,
                               keys: list[str]) -> pa.Table | None:
    distinct_rows = getattr(source, "distinct_rows", None)
    if stmt.condition is not None or distinct_rows is None:
        return None
    return await distinct_rows(db, table, keys)
