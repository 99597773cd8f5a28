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
from dataclasses import dataclass, field

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
    """One file or snapshot, write order columns kept, indexed by (series, time): the runs
    below are positions in that order. The rows themselves are put in that order only when
    a query for a few series has touched the part (:meth:`sorted`, in the background; until
    then such a query takes just its rows through the order); a scan of all series takes
    them as they are (:meth:`rows`)."""

    gids: np.ndarray       # series id of each run of rows
    starts: np.ndarray     # first position of each run
    ends: np.ndarray       # one past its last position
    tmin: np.ndarray       # first and last time of each run (ns)
    tmax: np.ndarray
    times: np.ndarray      # the time (ns) at each position, sorted within each run
    distinct: np.ndarray   # the part's distinct times, sorted (the overlap check)
    nbytes: int
    #: [(rows, order)]: ``order`` the row at each position, None once ``rows`` is in that
    #: order. One list item, replaced whole, so a reader always sees a matching pair.
    data: list

    def rows(self) -> pa.Table:
        """All rows, in whichever order they are in now."""
        return self.data[0][0]

    def sorted(self) -> pa.Table:
        """All rows in (series, time) order (sorted the first time)."""
        rows, order = self.data[0]
        if order is not None:
            rows = rows.take(pa.array(order))
            self.data[0] = (rows, None)  # two threads may both sort: same rows either way
        return rows


class SeriesRegistry:
    """Series ids shared by all parts of every table, and each series' tags (for filters)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.tags: list[dict[str, str]] = []
        self._matches: dict[tuple, np.ndarray] = {}
        self._by_values: dict[tuple, int] = {}  # (tag names, their values) -> id
        self.lock = threading.Lock()

    def ids_of_values(self, names: list[str], columns: list[list]) -> np.ndarray:
        """Ids of the series whose tag ``names`` take the values of each row of ``columns``
        (one list per name): known combinations by one dict lookup, new ones by their key."""
        shape = tuple(names)
        rows = list(zip(*columns)) if columns else []
        with self.lock:
            found = [self._by_values.get((shape, values)) for values in rows]
        if all(f is not None for f in found):
            return np.array(found, dtype=np.int64)
        tag_rows = [dict(zip(names, values)) for values in rows]
        out = self.ids_of([series_key(r) for r in tag_rows], tag_rows)
        with self.lock:
            if len(self._by_values) > 1_000_000:
                self._by_values.clear()
            for values, gid in zip(rows, out.tolist()):
                self._by_values[(shape, values)] = gid
        return out

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


def series_codes(table: pa.Table, tags: list[str]) -> np.ndarray:
    """One int64 per row, equal exactly for rows with equal tag values (nulls included): each
    tag column dictionary-encoded and the codes combined (renumbered densely whenever the
    product of the dictionary sizes would not fit in an int64)."""
    total, scale = None, 1
    for t in tags:
        col = table.column(t)
        if isinstance(col, pa.ChunkedArray):  # (combining copies even a single chunk)
            col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        encoded = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
        size = len(encoded.dictionary) + 1
        indices = encoded.indices
        if indices.null_count:
            codes = np.asarray(pc.fill_null(pc.add(indices.cast(pa.int64()), 1), 0))
        else:
            codes = np.asarray(indices).astype(np.int64) + 1
        if total is None:
            total, scale = codes, size
            continue
        if scale * size >= 2**62:
            distinct, total = np.unique(total, return_inverse=True)
            total, scale = total.astype(np.int64).reshape(-1), len(distinct)
        total, scale = total * size + codes, scale * size
    return total if total is not None else np.zeros(table.num_rows, dtype=np.int64)


def series_key(tags: dict) -> str:
    """The registry's name of a series: ``tag=value`` of each non-null tag, in name order."""
    return "".join(f"{t}={tags[t]}{KEY_SEPARATOR}" for t in sorted(tags) if tags[t] is not None)


def build_part(table: pa.Table, tags: list[str], registry: SeriesRegistry,
               unique: bool, sort: bool = False) -> HotPart:
    """Index one part (``unique``: its rows are already deduplicated, as a file's are;
    ``sort``: put the rows in order now rather than on first use).

    Positions are ordered by (series code, time); a (series, time) repeated within the part
    is then two neighbours, so the merge runs only when there is one (most snapshots have
    none)."""
    present = [t for t in tags if t in table.column_names]
    codes = series_codes(table, present)
    times = np.asarray(pc.cast(table.column("time"), pa.int64())).astype(np.int64, copy=False)
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    n = table.num_rows
    if not unique and n > 1 and ((codes[1:] == codes[:-1]) & (times[1:] == times[:-1])).any():
        return build_part(deduplicate(table, present, keep_order=True), tags, registry, True,
                          sort)
    in_order = n == 0 or bool((order[1:] > order[:-1]).all())
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1 if n else np.array([], dtype=np.int64)
    starts = np.concatenate([[0], change]).astype(np.int64) if n else change
    ends = np.concatenate([change, [n]]).astype(np.int64) if n else change
    if present:
        firsts = table.select(present).take(pa.array(order[starts]))
        gids = registry.ids_of_values(present, [c.to_pylist() for c in firsts.columns])
    else:
        gids = registry.ids_of([series_key({})] * len(starts), [{}] * len(starts))
    part = HotPart(gids=gids, starts=starts, ends=ends,
                   tmin=times[starts] if n else times, tmax=times[ends - 1] if n else times,
                   times=times, distinct=np.unique(times),
                   nbytes=table.nbytes + times.nbytes * 2 + (0 if in_order else order.nbytes),
                   data=[(table, None if in_order else order)])
    if sort:
        part.sorted()
    return part


class HotParts:
    """The LRU cache of indexed parts, bounded by ``max_bytes``. A part is built once: a
    caller asking for a part another thread is building waits for that build."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.registry = SeriesRegistry()
        self.parts: OrderedDict[tuple, HotPart] = OrderedDict()
        self.building: dict[tuple, threading.Event] = {}
        self.bytes = 0
        self.hits = 0
        self.built = 0
        self.lock = threading.Lock()

    def held(self, keys: list[tuple]) -> list[bool]:
        """Whether each part is indexed already."""
        with self.lock:
            return [k in self.parts for k in keys]

    def get(self, key: tuple) -> HotPart | None:
        """The indexed part of ``key`` when it is ready (never waits, never builds)."""
        with self.lock:
            return self._ready(key)

    def _ready(self, key: tuple) -> HotPart | None:
        """``key``'s indexed part, counted as a hit and made the most recent (lock held)."""
        found = self.parts.get(key)
        if found is not None:
            self.parts.move_to_end(key)
            self.hits += 1
        return found

    def part(self, key: tuple, load, tags: list[str], unique: bool, sort: bool = False
             ) -> HotPart:
        """The indexed part of ``key``, built from ``load()`` (an Arrow table) when missing."""
        while True:
            with self.lock:
                found = self._ready(key)
                if found is not None:
                    return found
                pending = self.building.get(key)
                if pending is None:
                    done = self.building[key] = threading.Event()
                    break
            pending.wait()  # built by another thread meanwhile (or it failed: build it here)
        try:
            built = build_part(load(), tags, self.registry, unique, sort)
            with self.lock:
                self.built += 1
                if built.nbytes <= self.max_bytes and key not in self.parts:
                    self.parts[key] = built
                    self.bytes += built.nbytes
                    while self.bytes > self.max_bytes:
                        _, old = self.parts.popitem(last=False)
                        self.bytes -= old.nbytes
            return built
        finally:
            with self.lock:
                del self.building[key]
            done.set()


@dataclass
class Selection:
    """The rows of a query: ``unique`` pieces need no merge, ``overlapping`` ones do;
    ``unsorted``: parts whose rows this query took out of order (worth sorting)."""

    unique: list[pa.Table]
    overlapping: list[pa.Table]
    rows: int
    unsorted: list[HotPart] = field(default_factory=list)


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
    """The rows at positions [a, b) of each range: slices of the sorted rows, or a ``take``
    of just those rows while the part's rows are not sorted yet."""
    keep = b > a
    a, b = a[keep], b[keep]
    table, order = part.data[0]
    if len(a) == 0:
        return table.slice(0, 0)
    if order is None and len(a) == 1:
        return table.slice(int(a[0]), int(b[0] - a[0]))
    if order is None and len(a) <= SLICE_LIMIT:
        return pa.concat_tables([table.slice(int(s), int(e - s)) for s, e in zip(a, b)])
    lengths = b - a
    offsets = np.repeat(a - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    positions = offsets + np.arange(lengths.sum())
    return table.take(pa.array(positions if order is None else order[positions]))


#: The series of a raw piece not registered yet (every raw piece holds it, so two raw pieces
#: sharing a timestamp are always merged).
UNREGISTERED = -1


def select(parts: list[HotPart], lo: int | None, hi: int | None,
           wanted: np.ndarray | None, raw: list[tuple[pa.Table, bool]] = ()) -> Selection:
    """Rows of ``parts`` in [lo, hi] of the ``wanted`` series (None: all), with the pieces that
    share a timestamp with another piece set apart for a merge.

    ``raw``: parts not indexed yet, already cut to the time range and the tag filter, each
    with whether its rows are unique (a file) or may repeat a key (a snapshot: always merged).
    Their series are taken to be all of ``wanted`` plus any not registered yet, which can
    only make more pieces merge, never fewer."""
    lo = np.iinfo(np.int64).min if lo is None else lo
    hi = np.iinfo(np.int64).max if hi is None else hi
    pieces: list[pa.Table] = []
    stamps: list[np.ndarray] = []
    series: list[np.ndarray] = []
    forced: set[int] = set()
    unsorted: list[HotPart] = []
    for part in parts:
        if len(part.gids) == 0 or part.distinct[-1] < lo or part.distinct[0] > hi:
            continue
        if wanted is None and part.distinct[0] >= lo and part.distinct[-1] <= hi:
            pieces.append(part.rows())  # all of it, in any order
            stamps.append(part.distinct)
            series.append(part.gids)
            continue
        chosen = (part.tmax >= lo) & (part.tmin <= hi)
        if wanted is not None:
            chosen &= np.isin(part.gids, wanted, assume_unique=False)
        idx = np.flatnonzero(chosen)
        if len(idx) == 0:
            continue
        if len(idx) == len(part.gids) and part.distinct[0] >= lo and part.distinct[-1] <= hi:
            piece = part.rows()
        else:
            if part.data[0][1] is not None:
                unsorted.append(part)
            piece = _rows_of(part, *_ranges(part, idx, lo, hi))
        if piece.num_rows:
            pieces.append(piece)
            d = part.distinct
            stamps.append(d[np.searchsorted(d, lo, "left"):np.searchsorted(d, hi, "right")])
            series.append(part.gids[idx])
    if raw:
        raw_series = np.unique(np.concatenate([[UNREGISTERED], [] if wanted is None else wanted])
                               ).astype(np.int64)
        for table, unique in raw:
            if not table.num_rows:
                continue
            if not unique:
                forced.add(len(pieces))
            pieces.append(table)
            stamps.append(np.unique(np.asarray(pc.cast(table.column("time"), pa.int64()))))
            series.append(raw_series)
    rows = sum(p.num_rows for p in pieces)
    if len(pieces) < 2 and not forced:
        return Selection(pieces, [], rows, unsorted)
    shared = _overlapping(stamps, series) | forced
    return Selection([p for i, p in enumerate(pieces) if i not in shared],
                     [p for i, p in enumerate(pieces) if i in shared], rows, unsorted)


#: Up to this many pieces sharing timestamps are checked pair by pair (a pair overlaps when it
#: shares a timestamp and a series); more are all merged.
PAIRWISE = 16


def _overlapping(stamps: list[np.ndarray], series: list[np.ndarray]) -> set[int]:
    """Indexes of the pieces that share a timestamp and a series with another piece."""
    candidates = _sharing(stamps)  # most pieces share no timestamp: series only for the rest
    if len(candidates) < 2:
        return set()
    candidates = candidates[_sharing([series[i] for i in candidates])].tolist()
    if len(candidates) > PAIRWISE:
        return set(candidates)
    found: set[int] = set()
    for n, i in enumerate(candidates):
        for j in candidates[n + 1:]:
            if (np.intersect1d(series[i], series[j]).size
                    and np.intersect1d(stamps[i], stamps[j], assume_unique=True).size):
                found.update((i, j))
    return found


def _sharing(values: list[np.ndarray]) -> np.ndarray:
    """Indexes (sorted) of the arrays (each without repeats) that hold a value another one
    holds too."""
    if len(values) < 2:
        return np.array([], dtype=np.int64)
    bounds = np.array([(v.min(), v.max()) if len(v) else (0, -1) for v in values])
    if _disjoint(bounds):
        return np.array([], dtype=np.int64)
    owner = np.repeat(np.arange(len(values)), [len(v) for v in values])
    flat = np.concatenate(values)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    same = np.flatnonzero(flat[1:] == flat[:-1])
    return np.union1d(owner[same], owner[same + 1])


def _disjoint(bounds: np.ndarray) -> bool:
    """Whether the arrays' [min, max] ranges overlap nowhere (then no value is shared; a
    cheap sufficient test)."""
    nonempty = bounds[:, 0] <= bounds[:, 1]
    b = bounds[nonempty]
    b = b[np.argsort(b[:, 0], kind="stable")]
    return bool((b[1:, 0] > b[:-1, 1]).all())
