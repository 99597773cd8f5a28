"""A fast path for the commonest small aggregate: ``max``/``min`` of numeric fields per
``GROUP BY time(...)`` window of one series (pure).

    SELECT max(f1), min(f2) AS x FROM m WHERE <tag comparisons> AND time >= ... AND time < ...
    GROUP BY time(1m[, offset]) [fill(null|none)]

(the TSBS single-groupby and cpu-max-all types). The general path
(:func:`query_api.influxql.select.run_aggregate`) computes these with a few dozen Arrow kernels
(scan, group-by per call, the fill grid, a key lookup per call, the fill); over the few hundred
rows of such a query each kernel's fixed cost is most of the work. Here the rows are selected
with one mask and every call is one NumPy ``ufunc.at`` over window indexes, and the result is
the same :class:`MeasurementResult` the general path builds (same columns, types and rows).

:func:`run_small` answers None when the plan is not of this shape (and the caller runs the
general path); the conditions are in :func:`applies`. Anything else -- GROUP BY tags, other
functions, time zones, fills other than null/none, fields that are not int64/float64 in the
table -- is not touched. ORDER BY time DESC and LIMIT/OFFSET apply to the one series' rows as
in the general path (SLIMIT/SOFFSET are the executor's).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from query_api.influxql import arrow_scan, ast
from query_api.influxql.planner import SelectPlan
from query_api.influxql.select import TIME, MeasurementResult, _bounds, _o
from query_api.influxql.timeutil import MIN_TIME

FUNCS = {"max": np.maximum, "min": np.minimum}
FILLS = ("null", "none")
#: more windows than this: the general path (1.x itself refuses huge bucket counts)
MAX_WINDOWS = 100_000


def applies(plan: SelectPlan) -> bool:
    """Whether ``plan`` has the shape :func:`run_small` computes (the table's column types are
    checked there)."""
    if not (plan.aggregate and plan.interval > 0 and not plan.group_tags
            and plan.location is None and plan.fill.mode in FILLS and not plan.transforms
            and plan.multi is None and not plan.aux and not plan.extend and plan.calls):
        return False
    if any(c.func not in FUNCS or c.count_distinct for c in plan.calls):
        return False
    keys = {c.key for c in plan.calls}
    for col in plan.columns:
        expr = col.expr
        if not (isinstance(expr, ast.VarRef) and expr.type is None and expr.name in keys):
            return False
    return True


def columns_read(plan: SelectPlan) -> frozenset[str]:
    """The columns a plan of this shape reads besides ``time``: the calls' fields and the
    names in the WHERE clause (the general path reads no others for this shape either)."""
    names = {c.field for c in plan.calls}
    if plan.condition is not None:
        names.update(r.name for r in ast.walk(plan.condition) if isinstance(r, ast.VarRef))
    return frozenset(names)


def _windows(ns: np.ndarray, interval: int, offset: int) -> np.ndarray:
    """GROUP BY time window start of each time (UTC: floor of ``t - offset``)."""
    shifted = ns - offset if offset else ns
    return shifted - np.mod(shifted, interval) + offset


def _window_of(t: int, interval: int, offset: int) -> int:
    return (t - offset) - (t - offset) % interval + offset


def run_small(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int
              ) -> MeasurementResult | None | bool:
    """The plan's result over ``table``, None when it has no rows (as the general path), or
    False when the plan or the table is not of this module's shape."""
    if not applies(plan) or table.num_rows == 0:
        return False
    fields = {c.field for c in plan.calls}
    names = set(table.column_names)
    for name in fields:
        if kinds.get(name) not in ("integer", "float") or name not in names:
            return False
        t = table.schema.field(name).type
        if not (pa.types.is_int64(t) or pa.types.is_float64(t)):
            return False
    mask = None
    if plan.condition is not None:
        mask = arrow_scan.tag_mask(plan.condition, table, kinds)
        if mask is None:
            return False
    lo, hi = _bounds(plan, now_ns)
    ns = table.column("time").cast(pa.int64()).to_numpy()
    keep = np.ones(len(ns), dtype=bool) if mask is None else np.asarray(
        mask.to_numpy(zero_copy_only=False), dtype=bool)
    if lo is not None:
        keep &= ns >= lo
    if hi is not None:
        keep &= ns <= hi
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return None
    windows = _windows(ns[rows], plan.interval, plan.offset)
    per_field: dict[str, tuple[np.ndarray, np.ndarray, pa.DataType]] = {}
    for name in fields:
        column = table.column(name)
        if column.null_count:
            valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)[rows]
            values = column.fill_null(0).to_numpy()[rows][valid]
            per_field[name] = (values, windows[valid], column.type)
        else:
            per_field[name] = (column.to_numpy()[rows], windows, column.type)
    firsts = [w.min() for _, w, _ in per_field.values() if len(w)]
    if not firsts:
        return None  # no call has a point: no series
    start_w = (None if lo is None or lo == MIN_TIME
               else _window_of(lo, plan.interval, plan.offset))
    base = int(min(firsts)) if start_w is None else start_w
    assert hi is not None  # aggregate with GROUP BY time: _bounds bounds it by now()
    end_w = _window_of(hi, plan.interval, plan.offset)
    count = (end_w - base) // plan.interval + 1
    if count > MAX_WINDOWS or count <= 0:
        return False
    outputs: dict[str, tuple[np.ndarray, np.ndarray, pa.DataType]] = {}
    any_point = np.zeros(count, dtype=bool)
    for call in plan.calls:
        values, wins, dtype = per_field[call.field]
        index = (wins - base) // plan.interval
        has = np.zeros(count, dtype=bool)
        has[index] = True
        if pa.types.is_floating(dtype):
            start = -np.inf if call.func == "max" else np.inf
            out = np.full(count, start, dtype=np.float64)
        else:
            info = np.iinfo(np.int64)
            out = np.full(count, info.min if call.func == "max" else info.max, dtype=np.int64)
        FUNCS[call.func].at(out, index, values)
        outputs[call.key] = (out, has, dtype)
        any_point |= has
    grid = base + np.arange(count, dtype=np.int64) * plan.interval
    select = np.arange(count) if plan.fill.mode == "null" else np.flatnonzero(any_point)
    if plan.descending:  # ORDER BY time DESC: the same rows, last window first
        select = select[::-1]
    if plan.limit or plan.offset_rows:  # LIMIT/OFFSET count the rows of the one series
        end = plan.offset_rows + plan.limit if plan.limit else None
        select = select[plan.offset_rows:end]
    arrays = [pa.array(grid[select], pa.int64())]
    names_out = [TIME]
    for i, col in enumerate(plan.columns):
        out, has, dtype = outputs[col.expr.name]
        arrays.append(pa.array(out[select], dtype, mask=~has[select]))
        names_out.append(_o(i))
    result = pa.table(arrays, names=names_out)
    return MeasurementResult(table=result, group_tags=(), starts=(0,) if result.num_rows else ())
