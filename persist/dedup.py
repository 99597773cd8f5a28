"""Query-time deduplication (pure): one row per primary key (tag set + time), and for each
field the last non-null value in write order."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from influent.model import INTERNAL_COLUMNS, ORDER_SEQ, ORDER_TS
from influent.model import KEY_SEPARATOR as SERIES_SEPARATOR


def deduplicate(table: pa.Table, tags: list[str], keep_order: bool = False) -> pa.Table:
    """Merge rows that share tags + time; drop the internal write-order columns (``keep_order``
    keeps them, each merged row with its newest write, so the result can be merged again).

    Most rows have a key of their own, and merging is the expensive part (an ordered ``last``
    per field), so the keys are counted first and only rows whose key occurs more than once go
    through the merge. Rows with a null tag take the merge path too.
    """
    keys = [t for t in tags if t in table.column_names] + ["time"]
    values = [c for c in table.column_names if c not in keys and c not in INTERNAL_COLUMNS]
    if keep_order:
        values += [c for c in INTERNAL_COLUMNS if c in table.column_names]
    if table.num_rows == 0:
        return table.select(keys + values)
    null_key = None
    for k in keys:
        if table.column(k).null_count:
            missing = pc.is_null(table.column(k))
            null_key = missing if null_key is None else pc.or_(null_key, missing)
    keyed = table if null_key is None else table.filter(pc.invert(null_key))
    repeated = _repeated_key_rows(keyed, keys[:-1])
    if repeated is None:  # every key once: nothing to merge there
        single, shared = keyed, keyed.slice(0, 0)
    else:
        single, shared = keyed.filter(pc.invert(repeated)), keyed.filter(repeated)
    if null_key is not None:
        shared = pa.concat_tables([shared, table.filter(null_key)])
    if shared.num_rows == 0:
        return single.select(keys + values)
    single = single.select(keys + values)
    return pa.concat_tables([single, _merge(shared, keys, values).cast(single.schema)])


def _repeated_key_rows(table: pa.Table, tags: list[str]) -> pa.Array | None:
    """A mask of the rows whose (series, time) occurs more than once, None when none does.

    The series is counted as one small integer, not as many string columns: the tag values are
    joined with a separator and dictionary-encoded (the group-by then hashes two integers per
    row instead of every tag string). Two different tag sets can join to the same text only
    when a value contains the separator; such rows are merely sent to the merge, which groups
    by the real tags, so the answer is exact either way."""
    frame = {"time": table.column("time")}
    if tags:
        joined = pc.binary_join_element_wise(*[table.column(t) for t in tags], SERIES_SEPARATOR)
        joined = joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
        frame["series"] = pc.dictionary_encode(joined).indices
    ids = pa.table(frame)
    counts = ids.group_by(list(frame), use_threads=True).aggregate([([], "count_all")])
    if counts.num_rows == ids.num_rows:
        return None
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1)).select(list(frame))
    rows = ids.append_column("row", pa.arange(0, ids.num_rows))
    hit = rows.join(repeated, list(frame), join_type="left semi", use_threads=True).column("row")
    mask = pc.is_in(rows.column("row"), value_set=hit.combine_chunks())
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask


def _merge(table: pa.Table, keys: list[str], values: list[str]) -> pa.Table:
    """One row per key: rows sorted by write order, then Arrow's ordered ``last`` aggregation
    (single-threaded hash group-by), which skips nulls: exactly "per field the last written
    non-null value"."""
    order = [c for c in (ORDER_TS, ORDER_SEQ) if c in table.column_names]
    if order:
        table = table.sort_by([(c, "ascending") for c in order])
    merged = table.group_by(keys, use_threads=False).aggregate([(v, "last") for v in values])
    return merged.rename_columns(keys + values)


def project_columns(table: pa.Table) -> pa.Table:
    """Columns in name order, as InfluxDB 3 shows a table (``SELECT *``)."""
    return table.select(sorted(c for c in table.column_names if c not in INTERNAL_COLUMNS))
