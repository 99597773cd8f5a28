"""The cached values of one Last Value Cache or Distinct Value Cache, kept as Arrow (pure).

Batches arrive from the write stream and are merged lazily (by the stream's reader once per
fetch -- query_api/cache_feed.py --, at a read, or once enough are pending), so one merge pays
for many writes and every step is a vectorised Arrow pass:

- a **last value cache** keeps, per key-column combination, the ``count`` newest rows by
  ``time``; rows of one series and time written twice are merged field by field exactly as a
  query deduplicates them (persist/dedup.py), so a cached row equals the stored row;
- a **distinct value cache** keeps the distinct combinations of its columns.

Each kept row remembers when it was last written (``SEEN``, wall-clock ns): rows older than the
``ttl`` / ``max_age`` are dropped, and a distinct cache over ``max_cardinality`` drops the least
recently seen. A cache that dropped anything is no longer *complete*: it still answers
``last_cache()``/``distinct_cache()`` as InfluxDB 3 does, but InfluxQL stops answering from it
(query_api/cache_queries.py), because its rows are then no longer the whole table's answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from influent.model import INTERNAL_COLUMNS, ORDER_SEQ, ORDER_TS, TIME
from persist.dedup import deduplicate
from persist.value_caches import DistinctCacheDef, LastCacheDef

SEEN = "__seen"
#: pending rows that make a merge happen before the next read
MERGE_AFTER_ROWS = 200_000
_KEY_JOIN = "\x1e"
_NULL_KEY = "\x00"


def _oldest_order(table: pa.Table) -> pa.Table:
    """Rows without write-order columns get order 0: older than any write that follows."""
    for name in (ORDER_TS, ORDER_SEQ):
        if name not in table.column_names:
            table = table.append_column(name, pa.repeat(pa.scalar(0, pa.int64()), table.num_rows))
    return table


def _with_order(table: pa.Table, seen_ns: int) -> pa.Table:
    """A batch with plain (not dictionary) columns, write-order columns and the time it was
    seen."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
               for c in table.columns]
    table = _oldest_order(pa.table(columns, names=table.column_names))
    return table.append_column(SEEN, pa.repeat(pa.scalar(seen_ns, pa.int64()), table.num_rows))


def _key_ids(table: pa.Table, columns: tuple[str, ...]) -> np.ndarray:
    """One integer per row identifying its combination of ``columns`` (nulls included)."""
    if not columns:
        return np.zeros(table.num_rows, dtype=np.int64)
    parts = []
    for c in columns:
        col = table.column(c) if c in table.column_names else pa.nulls(table.num_rows, pa.string())
        parts.append(pc.fill_null(pc.cast(col, pa.string()), _NULL_KEY))
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, _KEY_JOIN)
    joined = joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
    return pc.dictionary_encode(joined).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def newest_per_key(table: pa.Table, keys: tuple[str, ...], count: int,
                   ties: tuple[str, ...] = ()) -> pa.Table:
    """The ``count`` rows with the highest ``time`` of each key combination, sorted by key then
    newest first; rows of one time in order of their ``ties`` columns (the series key: the
    order InfluxQL gives such rows, so a LIMIT keeps the same ones)."""
    if table.num_rows == 0:
        return table
    frame = {"__key": pa.array(_key_ids(table, keys)),
             "__time": pc.cast(table.column(TIME), pa.int64())}
    frame.update({f"__t{i}": pc.fill_null(pc.cast(table.column(t), pa.string()), "")
                  for i, t in enumerate(ties) if t in table.column_names})
    order_by = [("__key", "ascending"), ("__time", "descending")] + [
        (name, "ascending") for name in frame if name.startswith("__t")]
    order = pc.sort_indices(pa.table(frame), sort_keys=order_by).to_numpy()
    sorted_ids = frame["__key"].to_numpy()[order]
    new_group = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]
    starts = np.flatnonzero(new_group)
    rank = np.arange(len(order)) - starts[np.cumsum(new_group) - 1]
    return table.take(pa.array(order[rank < count]))


@dataclass
class CacheState:
    """What every cache kind shares: pending batches, readiness and completeness."""

    rows: pa.Table | None = None
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    ready: bool = False      # seeded from the table's stored rows
    complete: bool = True    # nothing dropped by age or cardinality since the seed

    def add(self, batch: pa.Table, seen_ns: int) -> None:
        self.pending.append(_with_order(batch, seen_ns))
        self.pending_rows += batch.num_rows

    def take_pending(self) -> list[pa.Table]:
        taken, self.pending, self.pending_rows = self.pending, [], 0
        return taken


class LastValueCache:
    def __init__(self, definition: LastCacheDef, tags: list[str]):
        self.definition = definition
        self.tags = tags  # the table's series key, for merging rows of one series and time
        self.state = CacheState()
        self.newest: dict[int, pa.Table] = {}  # newest_rows answers until the rows change

    def add(self, batch: pa.Table, seen_ns: int | None = None) -> None:
        self.state.add(batch, time.time_ns() if seen_ns is None else seen_ns)
        if self.state.pending_rows >= MERGE_AFTER_ROWS:
            self.merge()

    def merge(self, now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        pending = self.state.take_pending()
        parts = ([self.state.rows] if self.state.rows is not None else []) + pending
        if pending:
            self.newest.clear()
            merged = pa.concat_tables(parts, promote_options="default")
            tags = [t for t in self.tags if t in merged.column_names]
            merged = deduplicate(merged, tags)  # drops the write-order columns
            kept = newest_per_key(merged, self.definition.key_columns, self.definition.count,
                                  tuple(tags))
            self.state.rows = _oldest_order(kept)  # merged rows: older than any later write
        self._expire(now_ns)

    def _expire(self, now_ns: int) -> None:
        rows = self.state.rows
        if rows is None or rows.num_rows == 0:
            return
        cutoff = now_ns - self.definition.ttl * 10**9
        if pc.min(rows.column(SEEN)).as_py() < cutoff:
            self.state.rows = rows.filter(pc.greater_equal(rows.column(SEEN), cutoff))
            self.state.complete = False
            self.newest.clear()

    def value_columns(self, present: list[str]) -> list[str]:
        keys = set(self.definition.key_columns)
        if self.definition.value_columns is not None:
            return list(self.definition.value_columns)
        return sorted(c for c in present if c not in keys and c not in INTERNAL_COLUMNS
                      and c != SEEN and c != TIME) + [TIME]

    def rows(self, now_ns: int | None = None) -> pa.Table:
        """The cache's contents as InfluxDB 3's ``last_cache()`` shows them: key columns, then
        value columns (``time`` last); per key newest first."""
        self.merge(now_ns)
        rows = self.state.rows if self.state.rows is not None else pa.table({TIME: pa.array(
            [], pa.timestamp("ns"))})
        names = list(self.definition.key_columns) + self.value_columns(rows.column_names)
        columns = [rows.column(c) if c in rows.column_names else pa.nulls(rows.num_rows, pa.string())
                   for c in names]
        return pa.table(columns, names=names)

    def newest_rows(self, per_key: int = 1, now_ns: int | None = None) -> pa.Table:
        """The ``per_key`` newest rows of each key, with every cached column (for InfluxQL)."""
        self.merge(now_ns)
        rows = self.state.rows
        if rows is None:
            return pa.table({TIME: pa.array([], pa.timestamp("ns"))})
        if per_key not in self.newest:
            newest = rows if per_key >= self.definition.count else newest_per_key(
                rows, self.definition.key_columns, per_key, tuple(self.tags))
            self.newest[per_key] = newest.drop_columns([c for c in (ORDER_TS, ORDER_SEQ, SEEN)
                                                        if c in newest.column_names])
        return self.newest[per_key]


class DistinctValueCache:
    def __init__(self, definition: DistinctCacheDef):
        self.definition = definition
        self.state = CacheState()

    def add(self, batch: pa.Table, seen_ns: int | None = None) -> None:
        present = [c for c in self.definition.columns if c in batch.column_names]
        if not present:
            return
        # one row per combination of the batch first: the pending list stays small
        distinct = batch.select(present).group_by(present, use_threads=False).aggregate([])
        self.state.add(distinct, time.time_ns() if seen_ns is None else seen_ns)
        if self.state.pending_rows >= MERGE_AFTER_ROWS:
            self.merge()

    def merge(self, now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        columns = list(self.definition.columns)
        parts = ([self.state.rows] if self.state.rows is not None else []) + [
            p.select([c for c in p.column_names if c in columns or c == SEEN])
            for p in self.state.take_pending()]
        if parts:
            merged = pa.concat_tables(parts, promote_options="default")
            for c in columns:
                if c not in merged.column_names:
                    merged = merged.append_column(c, pa.nulls(merged.num_rows, pa.string()))
            merged = merged.select(columns + [SEEN]).group_by(columns, use_threads=False).aggregate(
                [(SEEN, "max")]).rename_columns(columns + [SEEN])
            self.state.rows = merged
        self._expire(now_ns)

    def _expire(self, now_ns: int) -> None:
        rows = self.state.rows
        if rows is None or rows.num_rows == 0:
            return
        fresh = pc.greater_equal(rows.column(SEEN), now_ns - self.definition.max_age * 10**9)
        if not pc.all(fresh).as_py():
            rows = rows.filter(fresh)
            self.state.complete = False
        if rows.num_rows > self.definition.max_cardinality:
            rows = rows.sort_by([(SEEN, "descending")]).slice(0, self.definition.max_cardinality)
            self.state.complete = False
        self.state.rows = rows

    def rows(self, now_ns: int | None = None) -> pa.Table:
        """The distinct combinations, sorted column by column (InfluxDB 3's hierarchy)."""
        self.merge(now_ns)
        columns = list(self.definition.columns)
        if self.state.rows is None:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        rows = self.state.rows.select(columns)
        return rows.sort_by([(c, "ascending") for c in columns])
