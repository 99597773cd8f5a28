"""Query-time deduplication (pure): one row per primary key (tag set + time), and for each
field the last non-null value in write order."""
from __future__ import annotations

import pyarrow as pa

from topics.wire import INTERNAL_COLUMNS, ORDER_SEQ, ORDER_TS


def deduplicate(table: pa.Table, tags: list[str]) -> pa.Table:
    """Merge rows that share tags + time; drop the internal write-order columns.

    Rows are sorted by write order first; Arrow's ordered ``last`` aggregation (single-threaded
    hash group-by) skips nulls, which is exactly "per field the last written non-null value".
    """
    order = [c for c in (ORDER_TS, ORDER_SEQ) if c in table.column_names]
    if order:
        table = table.sort_by([(c, "ascending") for c in order])
    keys = [t for t in tags if t in table.column_names] + ["time"]
    values = [c for c in table.column_names if c not in keys and c not in INTERNAL_COLUMNS]
    if table.num_rows == 0:
        return table.select(keys + values)
    merged = table.group_by(keys, use_threads=False).aggregate([(v, "last") for v in values])
    return merged.rename_columns(keys + values)


def project_columns(table: pa.Table) -> pa.Table:
    """Columns in name order, as InfluxDB 3 shows a table (``SELECT *``)."""
    return table.select(sorted(c for c in table.column_names if c not in INTERNAL_COLUMNS))
