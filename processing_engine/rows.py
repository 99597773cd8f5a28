"""Arrow -> the Python rows plugins receive (pure).

Two shapes, both as InfluxDB 3 builds them: ``table_batches`` for ``process_writes`` (one dict
per table, each row holding only the columns present in that line, ``time`` as int ns) and the
result rows of ``influxdb3_local.query`` (every column, timestamps as int ns).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from topics.wire import INTERNAL_COLUMNS


def _python_ready(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Timestamps as int64 ns and dictionaries decoded, so ``to_pylist`` gives plain values."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    cols, names = [], []
    for name, col in zip(table.column_names, table.columns):
        if name in INTERNAL_COLUMNS:
            continue
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type) or pa.types.is_time(col.type):
            col = pc.cast(col, pa.int64())
        cols.append(col)
        names.append(name)
    return pa.table(cols, names=names)


def write_rows(batch: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows of an accepted batch for ``table_batches``: nulls (columns the line did not have)
    are left out."""
    return [{k: v for k, v in row.items() if v is not None}
            for row in _python_ready(batch).to_pylist()]


def table_batches(batches: list[tuple[str, pa.Table | pa.RecordBatch]]) -> list[dict[str, Any]]:
    """``[{"table_name": ..., "rows": [...]}, ...]`` with one entry per table, in first-seen
    order, rows in arrival order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, batch in batches:
        out.setdefault(table, []).extend(write_rows(batch))
    return [{"table_name": name, "rows": rows} for name, rows in out.items() if rows]


def query_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of a query result: one dict per row with every column."""
    return _python_ready(table).to_pylist()
