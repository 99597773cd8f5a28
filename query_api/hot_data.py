"""Hot data of the query API (a read buffer): every Parquet file and buffer snapshot a query
reads is kept decoded, deduplicated within itself and sorted by series then time, with a series
index (series -> row range and time bounds). A query takes from each part only the row ranges
of the series its tag filter allows, cut to its time range by binary search, so a one-series
query touches that series' rows alone.

Parts are immutable (a file never changes; a snapshot's key includes its size), so the cache
follows the catalog without invalidation: a query uses the parts the catalog lists now, and
parts no longer listed age out (least recently used, bounded by bytes).

Dedup only where data overlaps: the parts of a query are merged only when two of them hold a
timestamp and a series (each part keeps its distinct timestamps and its series ids, so the
check is a sort of a few thousand integers, not a hash of every row); the others are
concatenated as they are.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from influent.model import KEY_SEPARATOR
from persist.dedup import deduplicate
from query_api.tag_filter import TagFilter

#: Above this many series ranges in one part, rows are gathered with one ``take`` instead of
#: one slice per range.
SLICE_LIMIT = 32


@dataclass(frozen=True)
class HotPart:
    """One file or snapshot: rows sorted by (series, time), write order columns kept."""

    table: pa.Table
    gids: np.ndarray       # series id of each run of rows
    starts: np.ndarray     # first row of each run
    ends: np.ndarray       # one past its last row
    tmin: np.ndarray       # first and last time of each run (ns)
    tmax: np.ndarray
    times: np.ndarray      # every row's time (ns), sorted within each run
    distinct: np.ndarray   # the part's distinct times, sorted (the overlap check)
    nbytes: int


class SeriesRegistry:
    """Series ids shared by all parts of every table, and each series' tags (for filters)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.tags: list[dict[str, str]] = []
        self._matches: dict[tuple, np.ndarray] = {}
        self.lock = threading.Lock()

    def ids_of(self, keys: list[str], tag_rows: list[dict]) -> np.ndarray:
        with self.lock:
            out = np.empty(len(keys), dtype=np.int64)
            for i, (key, tags) in enumerate(zip(keys, tag_rows)):
                gid = self.ids.get(key)
                if gid is None:
                    gid = self.ids[key] = len(self.tags)
                    self.tags.append({k: v for k, v in tags.items() if v is not None})
                out[i] = gid
            return out

    def matching(self, tag_filter: TagFilter) -> np.ndarray:
        """Sorted ids of the series whose tags take allowed values."""
        with self.lock:
            key = (len(self.tags), tuple(sorted((c, tuple(sorted(v)))
                                                 for c, v in tag_filter.items())))
            found = self._matches.get(key)
            if found is None:
                found = np.array([i for i, tags in enumerate(self.tags)
                                  if all(tags.get(c) in v for c, v in tag_filter.items())],
                                 dtype=np.int64)
                if len(self._matches) > 256:
                    self._matches.clear()
                self._matches[key] = found
            return found


def series_keys(table: pa.Table, tags: list[str]) -> pa.Array:
    """One string per row naming its series: ``tag=value`` of each non-null tag, in name
    order (a tag column a part lacks is simply absent, as a null one)."""
    pieces = []
    for t in sorted(tags):
        if t not in table.column_names:
            continue
        col = table.column(t)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if not pa.types.is_string(col.type):
            col = col.cast(pa.string())
        pieces.append(pc.fill_null(pc.binary_join_element_wise(
            pa.scalar(t + "="), col, pa.scalar(KEY_SEPARATOR), ""), ""))
    if not pieces:
        return pa.repeat(pa.scalar("", pa.string()), table.num_rows)
    keys = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def build_part(table: pa.Table, tags: list[str], registry: SeriesRegistry,
               unique: bool) -> HotPart:
    """Index one part (``unique``: its rows are already deduplicated, as a file's are)."""
    present = [t for t in tags if t in table.column_names]
    if not unique:
        table = deduplicate(table, present, keep_order=True)
    keys = series_keys(table, present)
    ns = pc.cast(table.column("time"), pa.int64())
    order = pc.sort_indices(pa.table({"k": keys, "t": ns}), [("k", "ascending"),
                                                            ("t", "ascending")])
    table = table.take(order)
    keys = keys.take(order)
    times = np.asarray(pc.cast(table.column("time"), pa.int64()).to_numpy(), dtype=np.int64)
    n = table.num_rows
    codes = np.asarray(pc.dictionary_encode(keys).indices.to_numpy(), dtype=np.int64)
    change = np.flatnonzero(np.diff(codes)) + 1 if n else np.array([], dtype=np.int64)
    starts = np.concatenate([[0], change]).astype(np.int64) if n else change
    ends = np.concatenate([change, [n]]).astype(np.int64) if n else change
    run_keys = keys.take(pa.array(starts)).to_pylist()
    tag_rows = table.select(present).take(pa.array(starts)).to_pylist() if present else [
        {} for _ in run_keys]
    gids = registry.ids_of(run_keys, tag_rows)
    return HotPart(table=table, gids=gids, starts=starts, ends=ends,
                   tmin=times[starts] if n else times, tmax=times[ends - 1] if n else times,
                   times=times, distinct=np.unique(times), nbytes=table.nbytes + times.nbytes * 2)


class HotParts:
    """The LRU cache of indexed parts, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.registry = SeriesRegistry()
        self.parts: OrderedDict[tuple, HotPart] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.built = 0
        self.lock = threading.Lock()

    def part(self, key: tuple, load, tags: list[str], unique: bool) -> HotPart:
        """The indexed part of ``key``, built from ``load()`` (an Arrow table) when missing."""
        with self.lock:
            found = self.parts.get(key)
            if found is not None:
                self.parts.move_to_end(key)
                self.hits += 1
                return found
        built = build_part(load(), tags, self.registry, unique)
        with self.lock:
            self.built += 1
            if built.nbytes <= self.max_bytes and key not in self.parts:
                self.parts[key] = built
                self.bytes += built.nbytes
                while self.bytes > self.max_bytes:
                    _, old = self.parts.popitem(last=False)
                    self.bytes -= old.nbytes
        return built


@dataclass
class Selection:
    """The rows of a query: ``unique`` pieces need no merge, ``overlapping`` ones do."""

    unique: list[pa.Table]
    overlapping: list[pa.Table]
    rows: int


def _ranges(part: HotPart, idx: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Row range [a, b) of each chosen run, cut to [lo, hi] by binary search where the run
    straddles a bound."""
    a, b = part.starts[idx].copy(), part.ends[idx].copy()
    for i in np.flatnonzero(part.tmin[idx] < lo):
        s, e = a[i], b[i]
        a[i] = s + np.searchsorted(part.times[s:e], lo, side="left")
    for i in np.flatnonzero(part.tmax[idx] > hi):
        s, e = a[i], b[i]
        b[i] = s + np.searchsorted(part.times[s:e], hi, side="right")
    return a, b


def _rows_of(part: HotPart, a: np.ndarray, b: np.ndarray) -> pa.Table:
    keep = b > a
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return part.table.slice(0, 0)
    if len(a) == 1:
        return part.table.slice(int(a[0]), int(b[0] - a[0]))
    if len(a) <= SLICE_LIMIT:
        return pa.concat_tables([part.table.slice(int(s), int(e - s)) for s, e in zip(a, b)])
    lengths = b - a
    offsets = np.repeat(a - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return part.table.take(pa.array(offsets + np.arange(lengths.sum())))


def select(parts: list[HotPart], lo: int | None, hi: int | None,
           wanted: np.ndarray | None) -> Selection:
    """Rows of ``parts`` in [lo, hi] of the ``wanted`` series (None: all), with the pieces that
    share a timestamp with another piece set apart for a merge."""
    lo = np.iinfo(np.int64).min if lo is None else lo
    hi = np.iinfo(np.int64).max if hi is None else hi
    pieces: list[pa.Table] = []
    stamps: list[np.ndarray] = []
    series: list[np.ndarray] = []
    for part in parts:
        if len(part.gids) == 0 or part.distinct[-1] < lo or part.distinct[0] > hi:
            continue
        chosen = (part.tmax >= lo) & (part.tmin <= hi)
        if wanted is not None:
            chosen &= np.isin(part.gids, wanted, assume_unique=False)
        idx = np.flatnonzero(chosen)
        if len(idx) == 0:
            continue
        if len(idx) == len(part.gids) and part.distinct[0] >= lo and part.distinct[-1] <= hi:
            piece = part.table
        else:
            piece = _rows_of(part, *_ranges(part, idx, lo, hi))
        if piece.num_rows:
            pieces.append(piece)
            d = part.distinct
            stamps.append(d[np.searchsorted(d, lo, "left"):np.searchsorted(d, hi, "right")])
            series.append(part.gids[idx])
    rows = sum(p.num_rows for p in pieces)
    if len(pieces) < 2:
        return Selection(pieces, [], rows)
    shared = _overlapping(stamps, series)
    return Selection([p for i, p in enumerate(pieces) if i not in shared],
                     [p for i, p in enumerate(pieces) if i in shared], rows)


#: Up to this many pieces sharing timestamps are checked pair by pair (a pair overlaps when it
#: shares a timestamp and a series); more are all merged.
PAIRWISE = 16


def _overlapping(stamps: list[np.ndarray], series: list[np.ndarray]) -> set[int]:
    candidates = sorted(_sharing(stamps) & _sharing(series))
    if len(candidates) > PAIRWISE:
        return set(candidates)
    found: set[int] = set()
    for n, i in enumerate(candidates):
        for j in candidates[n + 1:]:
            if (np.intersect1d(series[i], series[j]).size
                    and np.intersect1d(stamps[i], stamps[j], assume_unique=True).size):
                found.update((i, j))
    return found


def _sharing(values: list[np.ndarray]) -> set[int]:
    """Indexes of the arrays (each without repeats) that hold a value another one holds too."""
    owner = np.repeat(np.arange(len(values)), [len(v) for v in values])
    flat = np.concatenate(values)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    same = np.flatnonzero(flat[1:] == flat[:-1])
    return set(owner[same].tolist()) | set(owner[same + 1].tolist())
