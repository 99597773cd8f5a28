"""fill(): null (count reads 0), none, previous, linear and a number -- as InfluxDB 1.x does it.

Observed 1.x rules (checked against 1.6 by the compatibility suite):

* ``fill(null)`` leaves nulls, except that ``count`` reads 0 in the windows where its own fill
  iterator runs (*active* rows: the series has points for that call, from the call's first
  window -- or the query's start window -- on);
* ``fill(<number>)`` replaces every null of every output row, calls and a selector's
  auxiliary fields alike, even without GROUP BY time; the number is cast to the column's
  numeric type (truncating for integers) and stays a raw number in string/boolean columns;
* ``fill(previous)`` carries the last non-null value of the series in output order (so
  backwards under ORDER BY time DESC), again for calls and auxiliary fields;
* ``fill(linear)`` interpolates calls between their neighbours in iteration order as 1.x does
  (``m*x + b`` in float64, truncated for integers); auxiliary fields stay null.

All vectorised: the nearest valid row on each side comes from forward/backward-filling the row
indices of valid values, restricted to the same series.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql import ast
from query_api.influxql.arrowutil import arange


def _reverse(arr: pa.Array) -> pa.Array:
    n = len(arr)
    return pc.take(arr, pc.subtract(n - 1, arange(n)))


def _neighbour(values: pa.Array, series_ids: pa.Array, forward: bool) -> pa.Array:
    """Index of the nearest valid value at or before (``forward``) / after each row within the
    same series; null when there is none."""
    n = len(values)
    idx = pc.if_else(pc.is_valid(values), arange(n), pa.scalar(None, pa.int64()))
    near = pc.fill_null_forward(idx) if forward else pc.fill_null_backward(idx)
    same = pc.fill_null(pc.equal(pc.take(series_ids, near), series_ids), False)
    return pc.if_else(same, near, pa.scalar(None, pa.int64()))


def _numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def fill_number(values: pa.Array, number: float | int) -> pa.Array:
    """Nulls -> ``number``: cast to a numeric column's type (Go's conversions), else the raw
    number in a mixed-type (dense union) column, as 1.x writes it into string/bool fields."""
    missing = pc.is_null(values)
    if not pc.any(missing).as_py():
        return values
    if _numeric(values.type):
        if pa.types.is_unsigned_integer(values.type):
            value: int | float = int(number) % 2 ** 64
        elif pa.types.is_integer(values.type):
            value = int(number)
        else:
            value = float(number)
        return pc.if_else(missing, pa.scalar(value, values.type), values)
    if pa.types.is_null(values.type):
        return pa.repeat(pa.scalar(number), len(values))
    n = len(values)
    type_ids = pc.if_else(missing, pa.scalar(1, pa.int8()), pa.scalar(0, pa.int8()))
    offsets = pc.if_else(missing, pa.scalar(0, pa.int32()), arange(n).cast(pa.int32()))
    return pa.UnionArray.from_dense(type_ids, offsets, [values, pa.array([number])])


def fill_previous(values: pa.Array, series_ids: pa.Array, descending: bool = False) -> pa.Array:
    """Carry the last non-null value forward within each series (in output order)."""
    if descending:
        return _reverse(fill_previous(_reverse(values), _reverse(series_ids)))
    prev = _neighbour(values, series_ids, forward=True)
    return pc.if_else(pc.is_null(values), pc.take(values, prev), values)


def fill_linear(values: pa.Array, windows: pa.Array, series_ids: pa.Array,
                descending: bool = False) -> pa.Array:
    """Interpolate nulls between the previous and next value of the same series, with 1.x's
    arithmetic: ``previous`` is the neighbour met first in output order."""
    if not _numeric(values.type):
        return values
    before = _neighbour(values, series_ids, forward=True)
    after = _neighbour(values, series_ids, forward=False)
    prev, nxt = (after, before) if descending else (before, after)
    pv, nv = pc.take(values, prev), pc.take(values, nxt)
    pw, nw = pc.take(windows, prev), pc.take(windows, nxt)
    elapsed = pc.cast(pc.subtract(nw, pw), pa.float64())
    if pa.types.is_integer(values.type):
        slope = pc.divide(pc.cast(pc.subtract(nv, pv), pa.float64()), elapsed)
        base = pc.cast(pv, pa.float64())
    else:
        slope = pc.divide(pc.subtract(nv, pv), elapsed)
        base = pv
    line = pc.add(pc.multiply(slope, pc.cast(pc.subtract(windows, pw), pa.float64())), base)
    if pa.types.is_integer(values.type):
        line = pc.cast(line, values.type, safe=False)
    return pc.if_else(pc.is_null(values), line, values)


def fill_column(values: pa.Array, windows: pa.Array, series_ids: pa.Array,
                active: pa.Array | None, fill: ast.Fill, *, is_count: bool = False,
                descending: bool = False, interpolate: bool = True) -> pa.Array:
    """Apply ``fill`` to one output column (rows sorted by series, then window ascending).

    ``active`` marks where a count reads 0 under fill(null) (None: nowhere); ``interpolate``
    is False for columns fill(linear) leaves alone (auxiliary fields, no GROUP BY time)."""
    if fill.mode == "null":
        if is_count and active is not None:
            missing = pc.and_(pc.is_null(values), active)
            return pc.if_else(missing, pa.scalar(0, values.type), values)
        return values
    if fill.mode == "number" and fill.value is not None:
        return fill_number(values, fill.value)
    if fill.mode == "previous":
        return fill_previous(values, series_ids, descending)
    if fill.mode == "linear" and interpolate:
        return fill_linear(values, windows, series_ids, descending)
    return values
