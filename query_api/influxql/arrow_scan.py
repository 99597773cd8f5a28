"""Arrow compute in place of a DataFusion plan for the commonest small shapes of an aggregate
query (pure): a WHERE clause of tag comparisons joined by AND/OR (the TSBS host filters), and
``max``/``min``/``count``/``sum``/``mean`` per (series, window). Planning a DataFusion
statement costs a few milliseconds, more than these computations over the rows of a few
series; every other shape keeps the SQL of :mod:`query_api.influxql.select`, and both give the
same rows.

``sum`` and ``mean`` keep InfluxDB 1.x's arithmetic to the last bit: its reducers add the
points one after another (``sum += v``; a mean is then ``sum / float64(count)``), and Arrow's
hash aggregation does the same per group in row order (one thread) starting from 0, which is
also what a one-partition DataFusion aggregate did here before (checked against a plain
sequential loop on adversarial values in tests/test_influxql_execution.py). Integers are
summed as int64 (exact, wrapping like Go), as 1.x's integer reducers do.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql import ast

#: calls computed here (not the selected point's time: plain aggregates over numbers)
ARROW_CALLS = frozenset({"max", "min", "count", "sum", "mean"})
_NUMERIC = (pa.types.is_integer, pa.types.is_floating)


def tag_mask(expr: ast.Expr, table: pa.Table, kinds: dict[str, str]) -> pa.Array | None:
    """The rows where ``expr`` holds, when it only compares tags with string literals (an
    absent tag equals ``''``, as in the SQL form); None for anything else."""
    expr = ast.strip_parens(expr)
    if not isinstance(expr, ast.BinaryExpr):
        return None
    if expr.op in ("AND", "OR"):
        lhs, rhs = tag_mask(expr.lhs, table, kinds), tag_mask(expr.rhs, table, kinds)
        if lhs is None or rhs is None:
            return None
        return pc.and_(lhs, rhs) if expr.op == "AND" else pc.or_(lhs, rhs)
    if expr.op not in ("=", "!="):
        return None
    ref, lit = ast.strip_parens(expr.lhs), ast.strip_parens(expr.rhs)
    if isinstance(ref, ast.StringLit):
        ref, lit = lit, ref
    if not (isinstance(ref, ast.VarRef) and isinstance(lit, ast.StringLit)):
        return None
    if kinds.get(ref.name) != "tag" or ref.type not in (None, "tag"):
        return None
    values = tag_values(table, ref.name)
    return (pc.equal if expr.op == "=" else pc.not_equal)(values, lit.value)


def tag_values(table: pa.Table, name: str) -> pa.ChunkedArray:
    """A tag column as plain strings with ``''`` for rows without the tag."""
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "") if col.null_count else col


def scan(table: pa.Table, lo: int | None, hi: int | None, mask: pa.Array | None,
         columns: dict[str, tuple[str, str | None]]) -> pa.Table:
    """Rows in [lo, hi] where ``mask`` holds, as ``__time`` (int64) and the named columns:
    output name -> (kind, source column): kind ``tag`` (``''`` when absent or null),
    ``const`` (always ``''``) or ``value`` (as stored)."""
    needed = ["time"] + [source for kind, source in columns.values() if kind != "const"]
    table = rows_where(table.select(list(dict.fromkeys(needed))), lo, hi, mask)
    out, names = [pc.cast(table.column("time"), pa.int64())], ["__time"]
    for name, (kind, source) in columns.items():
        if kind == "tag":
            out.append(tag_values(table, source))
        elif kind == "const":
            out.append(pa.repeat(pa.scalar("", pa.string()), table.num_rows))
        else:
            out.append(table.column(source))
        names.append(name)
    return pa.table(out, names=names)


def rows_where(table: pa.Table, lo: int | None, hi: int | None, mask: pa.Array | None
               ) -> pa.Table:
    """The rows in [lo, hi] where ``mask`` holds (the table itself when that is every row:
    the source often cut the time range already)."""
    ns = pc.cast(table.column("time"), pa.int64())
    keep = mask
    for bound, test in ((lo, pc.greater_equal), (hi, pc.less_equal)):
        if bound is not None:
            cond = test(ns, bound)
            keep = cond if keep is None else pc.and_(keep, cond)
    if keep is None or pc.all(keep).as_py():
        return table
    return table.filter(keep)


def take_sorted(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` for ascending ``rows``, chunk by chunk: Arrow's take of a table in
    many chunks concatenates every chunk first, which costs far more than a few rows."""
    batches = table.to_batches()
    if len(batches) < 2:
        return table.take(pa.array(rows, pa.int64()))
    offsets = np.cumsum([0] + [b.num_rows for b in batches])
    which = np.searchsorted(offsets, rows, side="right") - 1
    picked = [batches[b].take(pa.array(rows[which == b] - offsets[b], pa.int64()))
              for b in np.unique(which)]
    return pa.Table.from_batches(picked, schema=table.schema) if picked else table.slice(0, 0)


def edge_rows(keyed: pa.Table, gcols: list[str], descending: bool) -> np.ndarray:
    """The rows (of ``__time`` and the group columns ``gcols``) that a ``LIMIT 1`` per group
    can return: none older (newer, ascending) than the earliest of the groups' newest
    (oldest) times. Each run of rows of one group gives its time bound in one pass; for the
    usual "last point of each series" that leaves a few rows to sort."""
    times = keyed.column("__time").combine_chunks().to_numpy()
    heads, run_ids, _ = runs([keyed.column(g) for g in gcols], len(times))
    per_run = (np.maximum if descending else np.minimum).reduceat(times, heads)
    per_group = np.full(int(run_ids.max()) + 1, np.iinfo(np.int64).min if descending
                        else np.iinfo(np.int64).max, dtype=np.int64)
    (np.maximum if descending else np.minimum).at(per_group, run_ids, per_run)
    if descending:
        return times >= per_group.min()
    return times <= per_group.max()


def arrow_call(func: str, count_distinct: bool, point: bool, value_type: pa.DataType) -> bool:
    """Whether :func:`aggregate` computes this call."""
    if func in ("sum", "mean") and pa.types.is_floating(value_type) and (
            value_type != pa.float64()):
        return False
    return (func in ARROW_CALLS and not count_distinct and not point
            and any(test(value_type) for test in _NUMERIC))


@dataclass
class Groups:
    """The rows' key combinations: a dense id per row and one row of keys per id."""

    ids: np.ndarray          # int64, one per row
    keys: pa.Table           # the key columns, row i = group i
    change: pa.Array | None  # where a row's keys differ from the previous row's
    runs: tuple[pa.Table, np.ndarray, np.ndarray]  # (rows, run heads, group of each run)

    @cached_property
    def order(self) -> np.ndarray | None:
        """The rows in time order within each group; None when row order is (only sums and
        means need it)."""
        return _time_order(self.runs[0], self.ids, self.runs[1], self.runs[2])


@dataclass
class SeriesParts:
    """Groups holding several series split into (series, window) parts: 1.x reduces each
    series on its own, then combines the partial results of a group series by series."""

    ids: np.ndarray          # part of each row
    group: np.ndarray        # group of each part
    combine: np.ndarray      # the parts in the order they are combined: by group, series key
    runs: tuple[pa.Table, np.ndarray, np.ndarray]  # (rows, run heads, part of each run)

    @cached_property
    def order(self) -> np.ndarray | None:
        """Rows in time order within each part; None when row order is."""
        return _time_order(self.runs[0], self.ids, self.runs[1], self.runs[2])


def groups(table: pa.Table, keys: list[str]) -> Groups:
    """Group ids of ``table``'s rows by ``keys`` (columns without nulls)."""
    n = table.num_rows
    cols = [table.column(k) for k in keys]
    change = _changes(cols, n)
    heads, run_ids, first = runs(cols, n, change)
    ids = np.repeat(run_ids, np.diff(np.append(heads, n)))
    keyed = pa.table(cols, names=keys).take(pa.array(heads[first], pa.int64()))
    return Groups(ids, keyed, change, (table, heads, run_ids))


def series_parts(table: pa.Table, keys: list[str], series: list[str], grouped: Groups
                 ) -> SeriesParts | None:
    """The (series, window) parts of the groups (``series``: the tag columns not among the
    keys, in tag name order); None when every group is one series."""
    if not series:
        return None
    n = table.num_rows
    cols = [table.column(c) for c in series]
    change = _changes(cols, n)
    if grouped.change is not None:
        change = grouped.change if change is None else pc.or_(grouped.change, change)
    heads, run_ids, first = runs([table.column(c) for c in keys] + cols, n, change)
    size = len(first)
    if size == grouped.keys.num_rows:
        return None
    ids = np.repeat(run_ids, np.diff(np.append(heads, n)))
    starts = heads[first]
    group = grouped.ids[starts]
    ranked = pa.table([pa.array(group)] + [table.column(c).take(pa.array(starts))
                                           for c in series], names=["__g"] + series)
    combine = pc.sort_indices(ranked, sort_keys=[(c, "ascending") for c in ranked.column_names])
    return SeriesParts(ids, group, combine.to_numpy(), (table, heads, run_ids))


def _time_order(table: pa.Table, ids: np.ndarray, heads: np.ndarray, run_ids: np.ndarray
                ) -> np.ndarray | None:
    """None when the rows of each group are already in time order (times rise within every
    run, and a group's runs follow each other in time); else the rows sorted by (group,
    time), stable."""
    n = len(ids)
    if n < 2:
        return None
    times = table.column("__time").combine_chunks().to_numpy()
    rising = np.diff(times) >= 0
    rising[heads[1:] - 1] = True  # a run's first row may be older than the previous run's last
    if rising.all():
        if len(heads) == int(run_ids.max()) + 1:
            return None  # one run per group
        # runs of a group in time order (by their first times): if they then follow each
        # other without overlapping, the rows in that order of runs are in time order
        ends = np.append(heads[1:], n)
        order = np.lexsort((times[heads], run_ids))
        same = run_ids[order[1:]] == run_ids[order[:-1]]
        overlap = same & (times[heads[order[1:]]] < times[ends[order[:-1]] - 1])
        if not overlap.any() and np.array_equal(order, np.argsort(run_ids, kind="stable")):
            return None  # already in that order
        lengths = ends[order] - heads[order]
        shift = heads[order] - np.concatenate([[0], np.cumsum(lengths)[:-1]])
        perm = np.repeat(shift, lengths) + np.arange(n)  # by group, runs by first time
        if overlap.any():  # groups whose runs interleave in time: their rows sorted
            bad = np.zeros(int(run_ids.max()) + 1, dtype=bool)
            bad[run_ids[order[1:]][overlap]] = True
            mask = bad[ids[perm]]
            sub = perm[mask]
            perm[mask] = sub[_by_group_and_time(ids[sub], times[sub])]
        return perm
    return _by_group_and_time(ids, times)


def _by_group_and_time(ids: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The stable order of rows by (group, time): one sort of a combined integer key when it
    fits in 62 bits (about twice as fast as two keys), else a lexsort."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    low = int(times.min())
    span = int(times.max()) - low + 1
    if (int(ids.max()) + 1) * span < 2**62:
        return np.argsort(ids.astype(np.int64) * span + (times - low), kind="stable")
    return np.lexsort((times, ids))


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _changes(cols: list[pa.ChunkedArray | pa.Array], n: int) -> pa.Array | None:
    """Where a row's values of ``cols`` differ from the previous row's (from row 1 on). A
    column in several chunks (a source's parts) is compared chunk by chunk, each chunk's first
    row counted as a change: a run split in two still maps to one group (run heads are
    hashed), and nothing is copied."""
    change = None
    for col in cols:
        if n < 2:
            break
        if isinstance(col, pa.ChunkedArray) and col.num_chunks > 1:
            pieces = []
            for chunk in (c for c in col.chunks if len(c)):
                pieces.append(pa.array([True]))
                if len(chunk) > 1:
                    pieces.append(pc.not_equal(chunk.slice(1), chunk.slice(0, len(chunk) - 1)))
            diff = pa.concat_arrays(pieces).slice(1)  # the first chunk's mark is row 0
        else:
            flat = _flat(col)
            diff = pc.not_equal(flat.slice(1), flat.slice(0, n - 1))
        change = diff if change is None else pc.or_(change, diff)
    return change


def runs(cols: list[pa.Array], n: int, change: pa.Array | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of equal values of ``cols`` (n rows, no nulls): each run's first row, the
    dense group id of each run (runs of equal values share one) and, per group, its first
    run. Rows come in runs (a series' rows are together, its windows in order), so only the
    first row of each run is hashed: comparing neighbours is far cheaper than hashing.
    ``change``: :func:`_changes` of ``cols`` when the caller has it."""
    if n == 0:
        return (np.zeros(0, dtype=np.int64),) * 3
    if change is None:
        change = _changes(cols, n)
    if change is None:
        return (np.zeros(1, dtype=np.int64),) * 3
    heads = np.concatenate([np.zeros(1, dtype=np.int64), pc.indices_nonzero(
        pc.fill_null(change, True)).to_numpy().astype(np.int64) + 1])
    ids = np.zeros(len(heads), dtype=np.int64)
    first = np.zeros(1, dtype=np.int64)
    for col in cols:  # dense ids of the runs' keys, one column at a time (stays in 62 bits)
        encoded = pc.dictionary_encode(_flat(col.take(pa.array(heads))))
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        _, first, ids = np.unique(ids * max(len(encoded.dictionary), 1) + codes,
                                  return_index=True, return_inverse=True)
        ids = ids.reshape(-1).astype(np.int64)
    return heads, ids, first


def aggregate(table: pa.Table, func: str, value: str, grouped: Groups,
              parts: SeriesParts | None = None) -> pa.Table:
    """``func`` of ``value`` per group over the rows where it is not null: keys..., ``__val``.
    ``sum``/``mean`` add each series' values in time order, then (``parts``: groups of several
    series) the series' results in series key order, as 1.x does (see the module's note)."""
    col = table.column(value).combine_chunks()
    size = grouped.keys.num_rows
    if func in ("sum", "mean"):
        return _sum_or_mean(col, func == "mean", grouped, parts)
    ids = grouped.ids
    if col.null_count:
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        ids, col = ids[valid], col.filter(pa.array(valid))
    counts = np.bincount(ids, minlength=size)
    present = np.flatnonzero(counts)
    if func in ("max", "min"):
        done = pa.table({"__id": ids, "__v": col}).group_by(
            ["__id"], use_threads=False).aggregate([("__v", func)])
        present = done.column("__id").to_numpy()
        val: pa.Array | np.ndarray = done.column(f"__v_{func}").combine_chunks()
    else:
        val = counts[present]
    return _keyed(grouped, present, val)


def _keyed(grouped: Groups, present: np.ndarray, val) -> pa.Table:
    keyed = grouped.keys.take(pa.array(present, pa.int64()))
    return keyed.append_column("__val", pa.array(val))


def _sum_or_mean(col: pa.Array, mean: bool, grouped: Groups, parts: SeriesParts | None
                 ) -> pa.Table:
    size = grouped.keys.num_rows
    unit = parts if parts is not None else grouped
    # integer sums are exact in any order; only float additions need the time order
    exact = pa.types.is_integer(col.type) and not (mean and pa.types.is_unsigned_integer(
        col.type))
    ids, order = unit.ids, None if exact else unit.order
    if order is not None:
        ids, col = ids[order], col.take(pa.array(order))
    if col.null_count:
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        ids, col = ids[valid], col.filter(pa.array(valid))
    nparts = len(parts.group) if parts is not None else size
    counts = np.bincount(ids, minlength=nparts)
    sums = _sums(col, ids, nparts, mean)
    if parts is None:
        present = np.flatnonzero(counts)
        val = sums[present] / counts[present] if mean else sums[present]
        return _keyed(grouped, present, val)
    combine = parts.combine[counts[parts.combine] > 0]  # series with values, in key order
    group = parts.group[combine]
    totals = np.bincount(group, weights=counts[combine], minlength=size).astype(np.int64)
    present = np.flatnonzero(totals)
    if mean:  # 1.x's mean reducer over the series' means, each weighted by its count
        means = sums[combine] / counts[combine]
        weighted = np.where(counts[combine] >= 2, means * counts[combine], means)
        val = np.bincount(group, weights=weighted, minlength=size)[present] / totals[present]
    elif sums.dtype == np.float64:
        val = np.bincount(group, weights=sums[combine], minlength=size)[present]
    else:
        total = np.zeros(size, dtype=sums.dtype)
        np.add.at(total, group, sums[combine])
        val = total[present]
    return _keyed(grouped, present, val)


def _sums(col: pa.Array, ids: np.ndarray, size: int, mean: bool) -> np.ndarray:
    """Per group, its values added one after another in row order from 0: ``bincount``'s
    loop for floats (and for an unsigned mean, in double as the SQL form did); integers in
    int64 (uint64), exact and wrapping, as 1.x's integer reducers."""
    values = col.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(col.type) or (mean and pa.types.is_unsigned_integer(col.type)):
        return np.bincount(ids, weights=values.astype(np.float64), minlength=size)
    kind = np.uint64 if pa.types.is_unsigned_integer(col.type) else np.int64
    doubles = values.astype(np.float64)
    if len(values) == 0 or np.abs(doubles).max() * len(values) < 2.0**53:
        # every partial sum is an exact double: bincount's loop, much faster than add.at
        sums = np.bincount(ids, weights=doubles, minlength=size).astype(kind)
    else:
        sums = np.zeros(size, dtype=kind)
        np.add.at(sums, ids, values.astype(kind))
    return sums.astype(np.float64) if mean else sums
