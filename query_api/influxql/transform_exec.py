"""Run the registry's transformations over rows sorted by series (numpy per series slice).

Rows arrive in output order (series, then time in the query's direction); each series' slice
of a source column is handed, nulls removed, to its :data:`functions.Transform`; the emitted
values are scattered back to the rows they belong to, with a mask saying which rows emit.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from query_api.influxql.functions import TRANSFORM_FLOAT, TRANSFORMS
from query_api.influxql.planner import TransformSpec


def _numpy(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values (nulls as 0) and the valid mask of a numeric Arrow array."""
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_boolean(arr.type) or not (pa.types.is_integer(arr.type)
                                             or pa.types.is_floating(arr.type)):
        raise TypeError(arr.type)
    values = np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False))
    return values, valid


def _result_type(spec: TransformSpec, source: pa.DataType) -> pa.DataType:
    if spec.func in TRANSFORM_FLOAT:
        return pa.float64()
    if spec.func == "elapsed":
        return pa.int64()
    return source


def apply_transform(spec: TransformSpec, source: pa.Array, times: pa.Array,
                    starts: list[int]) -> tuple[pa.Array, np.ndarray]:
    """(values over all rows, null where nothing is emitted; emitted-row mask)."""
    n = len(source)
    mask = np.zeros(n, dtype=bool)
    if not (pa.types.is_integer(source.type) or pa.types.is_floating(source.type)):
        return pa.nulls(n, _result_type(spec, source.type if not pa.types.is_null(source.type)
                                        else pa.float64())), mask
    values, valid = _numpy(source)
    t = np.asarray(times.to_numpy(zero_copy_only=False), dtype=np.int64)
    out_type = _result_type(spec, source.type)
    out = np.zeros(n, dtype=out_type.to_pandas_dtype())
    fn = TRANSFORMS[spec.func]
    bounds = list(starts) + [n]
    for begin, end in zip(bounds, bounds[1:]):  # one vectorised call per series
        rows = begin + np.flatnonzero(valid[begin:end])
        if len(rows) == 0:
            continue
        emitted, where = fn(values[rows], t[rows], spec.unit or 1, spec.n)
        target = rows[where]
        out[target] = emitted
        mask[target] = True
    return pa.array(out, out_type, mask=~mask), mask
