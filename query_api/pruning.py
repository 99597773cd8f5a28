"""Time-range pruning (pure): which time bounds a SQL query puts on each table.

The query is planned once over empty tables; DataFusion's optimizer folds expressions such as
``now() - interval '1 hour'`` into literals, and the top-level AND-ed ``time`` comparisons of a
filter over a table scan give that table's bounds. Anything not understood leaves the bound
open, so pruning can only skip what the query provably cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass

import datafusion


@dataclass(frozen=True)
class TimeRange:
    """Inclusive bounds in ns since the epoch; None is unbounded."""

    lo: int | None = None
    hi: int | None = None

    def overlaps(self, min_time: int, max_time: int) -> bool:
        return (self.lo is None or max_time >= self.lo) and (self.hi is None or min_time <= self.hi)

    def narrow(self, lo: int | None, hi: int | None) -> "TimeRange":
        new_lo = lo if self.lo is None else (self.lo if lo is None else max(self.lo, lo))
        new_hi = hi if self.hi is None else (self.hi if hi is None else min(self.hi, hi))
        return TimeRange(new_lo, new_hi)


UNBOUNDED = TimeRange()
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}


def _kind(expr) -> str:
    return type(expr.to_variant()).__name__


def _conjuncts(expr) -> list:
    v = expr.to_variant()
    if type(v).__name__ == "BinaryExpr" and v.op().upper() == "AND":
        return _conjuncts(v.left()) + _conjuncts(v.right())
    return [expr]


def _literal_ns(expr) -> int | None:
    v = expr.to_variant()
    if type(v).__name__ != "Literal":
        return None
    try:
        value, _tz = v.value_timestamp()
        return int(value) if value is not None else None
    except Exception:  # not a timestamp literal
        return None


def _bound(expr) -> tuple[int | None, int | None]:
    """(lo, hi) implied by one conjunct ``time <op> literal``; (None, None) if none."""
    v = expr.to_variant()
    if type(v).__name__ != "BinaryExpr":
        return None, None
    op, left, right = v.op(), v.left(), v.right()
    if _kind(left) != "Column" and _kind(right) == "Column":
        left, right, op = right, left, _FLIP.get(op, "")
    if _kind(left) != "Column" or left.to_variant().name() != "time":
        return None, None
    ns = _literal_ns(right)
    if ns is None:
        return None, None
    return {">": (ns + 1, None), ">=": (ns, None), "<": (None, ns - 1), "<=": (None, ns),
            "=": (ns, ns)}.get(op, (None, None))


def table_time_ranges(plan) -> dict[str, TimeRange]:
    """Time bounds per scanned table. A table scanned anywhere without a bound is unbounded."""
    bounded: dict[str, list[TimeRange]] = {}

    def walk(node, under_filter: TimeRange | None) -> None:
        variant = node.to_variant()
        name = type(variant).__name__
        if name == "Filter":
            rng = UNBOUNDED
            for c in _conjuncts(variant.predicate()):
                rng = rng.narrow(*_bound(c))
            for child in node.inputs():
                walk(child, rng if under_filter is None else under_filter.narrow(rng.lo, rng.hi))
            return
        if name == "TableScan":
            bounded.setdefault(variant.table_name(), []).append(under_filter or UNBOUNDED)
            return
        keep = under_filter if name in ("Projection", "SubqueryAlias") else None
        for child in node.inputs():
            walk(child, keep)

    walk(plan, None)
    result = {}
    for table, ranges in bounded.items():
        if any(r.lo is None for r in ranges):
            lo = None
        else:
            lo = min(r.lo for r in ranges)
        hi = None if any(r.hi is None for r in ranges) else max(r.hi for r in ranges)
        result[table] = TimeRange(lo, hi)
    return result


def plan_time_ranges(ctx: datafusion.SessionContext, sql: str, params=None) -> dict[str, TimeRange]:
    df = ctx.sql(sql, param_values=params) if params else ctx.sql(sql)
    return table_time_ranges(df.optimized_logical_plan())
