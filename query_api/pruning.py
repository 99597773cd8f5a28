"""Pruning (pure): which time bounds and tag values a SQL query puts on each table.

The query is planned once over empty tables; DataFusion's optimizer folds expressions such as
``now() - interval '1 hour'`` into literals, and the top-level AND-ed ``time`` comparisons of a
filter over a table scan give that table's bounds. Anything not understood leaves the bound
open, so pruning can only skip what the query provably cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass

import datafusion

from query_api import sql_guard
from query_api.tag_filter import TagFilter, both, either, one_column


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


def _string_literal(expr) -> str | None:
    v = expr.to_variant()
    if type(v).__name__ != "Literal" or v.data_type() not in ("Utf8", "LargeUtf8", "Utf8View"):
        return None
    return v.value_string()


def _equalities(expr) -> list[tuple[str, str]] | None:
    """``column = 'text'`` terms of an OR chain (DataFusion turns IN lists into one), or None
    when the expression is anything else."""
    v = expr.to_variant()
    if type(v).__name__ != "BinaryExpr":
        return None
    op = v.op().upper()
    if op == "OR":
        left, right = _equalities(v.left()), _equalities(v.right())
        return None if left is None or right is None else left + right
    if op != "=":
        return None
    column, literal = v.left(), v.right()
    if _kind(column) != "Column":
        column, literal = literal, column
    value = _string_literal(literal) if _kind(column) == "Column" else None
    return None if value is None else [(column.to_variant().name(), value)]


@dataclass(frozen=True)
class _Scan:
    conjuncts: list  # filters seen through projections and aliases
    direct: list     # those not behind a projection (which may rename columns)


def _scan_filters(plan) -> dict[str, list[_Scan]]:
    """For each scanned table, one entry per scan with the conjuncts filtering that scan
    (anything but a filter, a projection or an alias in between drops them)."""
    scans: dict[str, list[_Scan]] = {}

    def walk(node, above: _Scan | None) -> None:
        variant = node.to_variant()
        name = type(variant).__name__
        if name == "Filter":
            mine = _conjuncts(variant.predicate())
            here = _Scan((above.conjuncts if above else []) + mine, (above.direct if above else []) + mine)
            for child in node.inputs():
                walk(child, here)
            return
        if name == "TableScan":
            scans.setdefault(variant.table_name(), []).append(above or _Scan([], []))
            return
        keep = {"Projection": above and _Scan(above.conjuncts, []),
                "SubqueryAlias": above}.get(name)
        for child in node.inputs():
            walk(child, keep)

    walk(plan, None)
    return scans


def _time_range(conjuncts: list) -> TimeRange:
    rng = UNBOUNDED
    for c in conjuncts:
        rng = rng.narrow(*_bound(c))
    return rng


def _tag_filter(conjuncts: list) -> TagFilter:
    found: TagFilter = {}
    for c in conjuncts:
        terms = _equalities(c)
        if terms:
            found = both(found, one_column(terms))
    return found


def table_time_ranges(plan) -> dict[str, TimeRange]:
    """Time bounds per scanned table. A table scanned anywhere without a bound is unbounded."""
    result = {}
    for table, scans in _scan_filters(plan).items():
        ranges = [_time_range(scan.conjuncts) for scan in scans]
        lo = None if any(r.lo is None for r in ranges) else min(r.lo for r in ranges)
        hi = None if any(r.hi is None for r in ranges) else max(r.hi for r in ranges)
        result[table] = TimeRange(lo, hi)
    return result


def table_tag_filters(plan) -> dict[str, TagFilter]:
    """Tag values each scanned table is restricted to, over all its scans (see tag_filter)."""
    return {table: either([_tag_filter(scan.direct) for scan in scans])
            for table, scans in _scan_filters(plan).items()}


@dataclass(frozen=True)
class ScanLimits:
    """What a query can see of each table: a time range and tag values."""

    time: dict[str, TimeRange]
    tags: dict[str, TagFilter]


def plan_scan_limits(ctx: datafusion.SessionContext, sql: str, params=None) -> ScanLimits:
    df = sql_guard.plan(ctx, sql, params)  # read-only: DDL/DML/SET never run, even here
    plan = df.optimized_logical_plan()
    return ScanLimits(table_time_ranges(plan), table_tag_filters(plan))


def plan_time_ranges(ctx: datafusion.SessionContext, sql: str, params=None) -> dict[str, TimeRange]:
    return plan_scan_limits(ctx, sql, params).time
