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
