"""Partition keys: which buffer (and later which Parquet file group) a row belongs to.

The default template is the UTC day of ``time`` (``%Y-%m-%d``), as in InfluxDB 3 / IOx.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_TIME_FORMAT = "%Y-%m-%d"


def partition_keys(batch: pa.RecordBatch, time_format: str = DEFAULT_TIME_FORMAT) -> pa.Array:
    """One partition key string per row (vectorised strftime over the time column)."""
    return pc.strftime(batch.column("time"), format=time_format)


def split_by_partition(batch: pa.RecordBatch, keys: pa.Array) -> dict[str, pa.RecordBatch]:
    """Rows of ``batch`` grouped by their partition key, input order kept within a group."""
    unique = pc.unique(keys)
    if len(unique) == 1:
        return {unique[0].as_py(): batch}
    return {k.as_py(): batch.filter(pc.equal(keys, k)) for k in unique}
