"""Small vectorised Arrow helpers shared by the InfluxQL modules (no per-row Python)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def arange(n: int) -> pa.Array:
    """0..n-1 as int64."""
    if n == 0:
        return pa.array([], pa.int64())
    return pc.indices_nonzero(pa.repeat(pa.scalar(True), n)).cast(pa.int64())


def run_starts(table: pa.Table, columns: list[str]) -> list[int]:
    """Row offsets where the values of ``columns`` change (``table`` sorted by them); always
    starts with 0 for a non-empty table."""
    n = table.num_rows
    if n == 0:
        return []
    if not columns or n == 1:
        return [0]
    changed = None
    for name in columns:
        col = table.column(name).combine_chunks()
        diff = pc.fill_null(pc.not_equal(col.slice(1), col.slice(0, n - 1)),
                            True)
        both_null = pc.and_(pc.is_null(col.slice(1)), pc.is_null(col.slice(0, n - 1)))
        diff = pc.and_(diff, pc.invert(both_null))
        changed = diff if changed is None else pc.or_(changed, diff)
    starts = pc.add(pc.indices_nonzero(changed), 1).to_pylist()
    return [0] + starts


def arrow_type(kind: str) -> pa.DataType:
    return {"float": pa.float64(), "integer": pa.int64(), "uinteger": pa.uint64(),
            "string": pa.string(), "boolean": pa.bool_(), "tag": pa.string(),
            "time": pa.int64()}.get(kind, pa.float64())


def lookup(left: pa.Table, right: pa.Table, keys: list[str]) -> pa.Array | None:
    """For each row of ``left``, the row of ``right`` with equal ``keys`` (null where none;
    ``right``'s keys are unique): a left join in a few kernels, each key column dictionary-
    encoded over both sides and the codes combined into one integer. None when the codes
    would not fit in 62 bits (the caller joins instead)."""
    n = left.num_rows
    total, scale = None, 1
    for key in keys:
        lcol, rcol = left.column(key).combine_chunks(), right.column(key).combine_chunks()
        if rcol.type != lcol.type:
            rcol = rcol.cast(lcol.type)
        encoded = pc.dictionary_encode(pa.concat_arrays([lcol, rcol]))
        codes = encoded.indices.cast(pa.int64())
        size = max(len(encoded.dictionary), 1)
        scale *= size
        if scale >= 2**62:
            return None
        total = codes if total is None else pc.add(pc.multiply(total, size), codes)
    if total is None:
        return None
    return pc.index_in(total.slice(0, n), value_set=total.slice(n))
