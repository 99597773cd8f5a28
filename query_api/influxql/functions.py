"""The InfluxQL function registry: every function influent answers, with its kind, its
argument rules and (for the functions computed outside SQL) its implementation.

Adding a function means adding an entry here:

* **aggregates/selectors** reduce the points of a (series, window) to one value; the planner
  validates them from :data:`REGISTRY`; those with a ``sql`` builder are one DataFusion
  aggregate, the rest (median, percentile, mode, distinct, selectors that report their
  point) have their SQL in :mod:`query_api.influxql.select` and ``integral`` its arithmetic
  in :func:`integral_contributions`;
* **multi-point selectors** (``top``, ``bottom``, ``sample``) return several points per
  window with their own times;
* **transformations** (``derivative`` ...) map the stream of one series' points -- raw, or the
  filled values of an aggregate per window -- to output points: a :data:`Transform` takes the
  series' sorted values and times as numpy arrays and returns the emitted values and a mask
  of the input positions that emit (vectorised over the slice, no per-point Python);
* **math** functions are element-wise over Arrow arrays (:data:`MATH`).

Semantics follow InfluxDB 1.x's reducers: duplicate times in one stream keep the first point
for the difference family; ``non_negative_*`` drop negative results; ``moving_average`` emits
from the N-th point on at the N-th point's time with 1.x's running sum; ``elapsed`` is an
integer count of ``unit``; the default unit of ``derivative`` is 1s on raw points and the
GROUP BY interval on aggregates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SECOND = 1_000_000_000
#: ``sample`` picks points with a generator seeded by this (1.x seeds from the clock, so its
#: choice is not reproducible; influent's is, which keeps tests deterministic)
SAMPLE_SEED = 20091110


@dataclass(frozen=True)
class Function:
    name: str
    kind: str            # "aggregate" | "selector" | "multi" | "transform" | "math"
    min_args: int
    max_args: int
    numeric: bool = False   # reads numbers only (``f(*)`` skips other fields)
    #: a plain DataFusion aggregate over the quoted value column (None: computed elsewhere)
    sql: Callable[[str], str] | None = None
    #: "float"/"integer" when the result type is not the field's
    result: str | None = None


#: the aggregates that are one DataFusion aggregate per (series, window)
_AGGREGATE_SQL: dict[str, Callable[[str], str]] = {
    "count": lambda v: f"count({v})",
    "sum": lambda v: f"sum({v})",
    "mean": lambda v: f"avg(CAST({v} AS DOUBLE))",
    "spread": lambda v: f"max({v}) - min({v})",
    "stddev": lambda v: f"stddev_samp(CAST({v} AS DOUBLE))",
}
#: selectors as plain aggregates, when the selected point's time and fields are not needed
SELECTOR_SQL: dict[str, Callable[[str], str]] = {
    "min": lambda v: f"min({v})",
    "max": lambda v: f"max({v})",
    "first": lambda v: f'first_value({v} ORDER BY "__time" ASC, {v} DESC)',
    "last": lambda v: f'first_value({v} ORDER BY "__time" DESC, {v} DESC)',
}
_RESULT = {"count": "integer", "mean": "float", "median": "float", "stddev": "float",
           "integral": "float"}


# ---- transformations ---------------------------------------------------------------------

#: (values, times, unit_ns, n) -> (emitted values, mask of emitting input positions)
Transform = Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]


def _first_of_each_time(times: np.ndarray) -> np.ndarray:
    """Mask keeping the first point of each run of equal times (1.x skips the others)."""
    keep = np.ones(len(times), dtype=bool)
    if len(times) > 1:
        keep[1:] = times[1:] != times[:-1]
    return keep


def _pairs(values: np.ndarray, times: np.ndarray):
    keep = _first_of_each_time(times)
    idx = np.flatnonzero(keep)
    return idx, values[idx], times[idx]


def _as_float_diff(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iu":
        return (values[1:] - values[:-1]).astype(np.float64)
    return values[1:] - values[:-1]


def derivative(values, times, unit, n, non_negative=False):
    idx, v, t = _pairs(values, times)
    mask = np.zeros(len(values), dtype=bool)
    if len(v) < 2:
        return np.empty(0, np.float64), mask
    diff = _as_float_diff(v)
    elapsed = np.abs(t[1:] - t[:-1]).astype(np.float64)
    out = diff / (elapsed / float(unit))
    emit = diff >= 0 if non_negative else np.ones(len(diff), dtype=bool)
    mask[idx[1:][emit]] = True
    return out[emit], mask


def difference(values, times, unit, n, non_negative=False):
    idx, v, t = _pairs(values, times)
    mask = np.zeros(len(values), dtype=bool)
    if len(v) < 2:
        return np.empty(0, values.dtype), mask
    diff = v[1:] - v[:-1]
    emit = diff >= 0 if non_negative else np.ones(len(diff), dtype=bool)
    mask[idx[1:][emit]] = True
    return diff[emit], mask


def elapsed(values, times, unit, n):
    idx, v, t = _pairs(values, times)
    mask = np.zeros(len(values), dtype=bool)
    if len(v) < 2:
        return np.empty(0, np.int64), mask
    steps = t[1:] - t[:-1]  # negative under ORDER BY time DESC, as in 1.x
    gaps = np.sign(steps) * (np.abs(steps) // unit)  # Go's truncating division
    mask[idx[1:]] = True
    return gaps.astype(np.int64), mask


def moving_average(values, times, unit, n):
    """1.x's running sum: add the new value after subtracting the one leaving the window; a
    sequential cumulative sum over the interleaved (+new, -old) terms reproduces its rounding."""
    count = len(values)
    mask = np.zeros(count, dtype=bool)
    if count < n:
        return np.empty(0, np.float64), mask
    x = values.astype(np.float64) if values.dtype.kind == "f" else values
    if n == 1:
        out = x.astype(np.float64)
    else:
        # terms: x0..x(n-1), then for each later point -x(i-n), +x(i)
        later = count - n
        terms = np.empty(n + 2 * later, dtype=x.dtype)
        terms[:n] = x[:n]
        terms[n::2] = -x[:later]
        terms[n + 1::2] = x[n:]
        running = np.cumsum(terms)
        sums = np.concatenate([running[n - 1:n], running[n + 1::2]])
        out = sums.astype(np.float64) / float(n)
    mask[n - 1:] = True
    return out, mask


def cumulative_sum(values, times, unit, n):
    return np.cumsum(values), np.ones(len(values), dtype=bool)


TRANSFORMS: dict[str, Transform] = {
    "derivative": derivative,
    "non_negative_derivative": lambda v, t, u, n: derivative(v, t, u, n, non_negative=True),
    "difference": difference,
    "non_negative_difference": lambda v, t, u, n: difference(v, t, u, n, non_negative=True),
    "moving_average": moving_average,
    "cumulative_sum": cumulative_sum,
    "elapsed": elapsed,
}
#: transformations whose GROUP BY time input starts one interval before the query (1.x)
NEEDS_PREVIOUS_WINDOW = frozenset({"derivative", "non_negative_derivative", "difference",
                                   "non_negative_difference", "moving_average", "elapsed"})
#: result type when not the input's
TRANSFORM_FLOAT = frozenset({"derivative", "non_negative_derivative", "moving_average"})


def transform_default_unit(name: str, interval: int) -> int:
    if name == "elapsed":
        return 1
    return interval if interval else SECOND


# ---- math --------------------------------------------------------------------------------


def _float(x):
    return pc.cast(x, pa.float64())


def _round(x):
    if pa.types.is_integer(x.type):
        return x
    # Go's math.Round: half away from zero
    return pc.round(x, round_mode="half_towards_infinity")


_INV_LN2 = 1.4426950408889634074  # Go's 1/Ln2 and 1/Ln10, rounded from exact constants
_INV_LN10 = 0.43429448190325182765


def _go_log2(x):
    """Go's math.Log2: exact for powers of two (frexp), else log(frac)/ln2 + exp."""
    values = np.asarray(_float(x).fill_null(1.0).to_numpy(zero_copy_only=False))
    frac, exp = np.frexp(values)
    out = np.where(frac == 0.5, (exp - 1).astype(np.float64),
                   np.log(frac) * _INV_LN2 + exp)
    return pa.array(out, pa.float64(), mask=np.asarray(pc.is_null(x).to_numpy(
        zero_copy_only=False), dtype=bool))


def _go_log10(x):
    """Go's math.Log10: ln(x) * (1/Ln10)."""
    return pc.multiply(pc.ln(_float(x)), _INV_LN10)


def _log(x, base):
    return pc.divide(pc.ln(_float(x)), pc.ln(_float(base)))


def _keep_int(fn):
    def apply(x):
        return x if pa.types.is_integer(x.type) else fn(x)
    return apply


MATH: dict[str, Callable[..., pa.Array]] = {
    "abs": lambda x: pc.abs(x),
    "ceil": _keep_int(pc.ceil),
    "floor": _keep_int(pc.floor),
    "round": _round,
    "sqrt": lambda x: pc.sqrt(_float(x)),
    "pow": lambda x, y: pc.power(_float(x), _float(y)),
    "exp": lambda x: pc.exp(_float(x)),
    "ln": lambda x: pc.ln(_float(x)),
    "log": _log,
    "log2": _go_log2,
    "log10": _go_log10,
    "sin": lambda x: pc.sin(_float(x)),
    "cos": lambda x: pc.cos(_float(x)),
    "tan": lambda x: pc.tan(_float(x)),
    "asin": lambda x: pc.asin(_float(x)),
    "acos": lambda x: pc.acos(_float(x)),
    "atan": lambda x: pc.atan(_float(x)),
    "atan2": lambda y, x: pc.atan2(_float(y), _float(x)),
}
_MATH_ARITY = {"pow": 2, "log": 2, "atan2": 2}


# ---- integral ----------------------------------------------------------------------------


def integral_contributions(values: np.ndarray, times: np.ndarray, windows: np.ndarray,
                           window_ends: np.ndarray, unit: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """One series' trapezoid areas in 1.x's order, as (window, area) pairs to be summed per
    window in order. Points of equal time keep the last; a segment crossing a window end is
    split at the end with the interpolated value, each part going to its own window."""
    n = len(values)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    keep = np.ones(n, dtype=bool)
    keep[:-1] = times[:-1] != times[1:]
    v, t, w, e = (values[keep].astype(np.float64), times[keep], windows[keep],
                  window_ends[keep])
    if len(v) < 2:
        return w[:1], np.zeros(1)
    pv, pt, pw, pe = v[:-1], t[:-1], w[:-1], e[:-1]
    cv, ct, cw = v[1:], t[1:], w[1:]
    cross = cw != pw
    u = float(unit)
    # interpolated value at the previous window's end (only used where crossing)
    span = (ct - pt).astype(np.float64)
    interp = (cv - pv) / span * (pe - pt).astype(np.float64) + pv  # 1.x: m*x + b
    head = 0.5 * (interp + pv) * ((pe - pt).astype(np.float64) / u)
    tail = 0.5 * (interp + cv) * ((ct - pe).astype(np.float64) / u)
    plain = 0.5 * (cv + pv) * (span / u)
    # areas: crossing segments give (prev window, head) then (new window, tail)
    win = np.where(cross, pw, cw)
    area = np.where(cross, head, plain)
    order_w = np.stack([win, np.where(cross, cw, -1)], axis=1).reshape(-1)
    order_a = np.stack([area, np.where(cross, tail, np.nan)], axis=1).reshape(-1)
    real = ~np.isnan(order_a)
    first = (w[:1], np.zeros(1))
    return (np.concatenate([first[0], order_w[real]]),
            np.concatenate([first[1], order_a[real]]))


# ---- the registry ------------------------------------------------------------------------

def _entries() -> dict[str, Function]:
    out: dict[str, Function] = {}
    for name in ("count", "sum", "mean", "median", "spread", "stddev", "distinct", "mode",
                 "integral"):
        arity = (1, 2) if name == "integral" else (1, 1)
        out[name] = Function(name, "aggregate", *arity,
                             numeric=name in ("sum", "mean", "median", "spread", "stddev",
                                              "integral"),
                             sql=_AGGREGATE_SQL.get(name), result=_RESULT.get(name))
    for name in ("first", "last", "min", "max", "percentile"):
        arity = (2, 2) if name == "percentile" else (1, 1)
        out[name] = Function(name, "selector", *arity,
                             numeric=name in ("min", "max", "percentile"),
                             sql=SELECTOR_SQL.get(name))
    out["top"] = Function("top", "multi", 2, 99, numeric=True)
    out["bottom"] = Function("bottom", "multi", 2, 99, numeric=True)
    out["sample"] = Function("sample", "multi", 2, 2)
    for name in TRANSFORMS:
        arity = (2, 2) if name == "moving_average" else (1, 2)
        if name == "cumulative_sum":
            arity = (1, 1)
        out[name] = Function(name, "transform", *arity, numeric=True)
    for name in MATH:
        k = _MATH_ARITY.get(name, 1)
        out[name] = Function(name, "math", k, k, numeric=True)
    return out


REGISTRY: dict[str, Function] = _entries()


def kind_of(name: str) -> str | None:
    entry = REGISTRY.get(name)
    return entry.kind if entry else None


def names_of(*kinds: str) -> frozenset[str]:
    return frozenset(n for n, f in REGISTRY.items() if f.kind in kinds)
