"""Run a :class:`SelectPlan` over one measurement's Arrow table with DataFusion.

Steps (all vectorised): a *scan* SQL applies the time range and WHERE clause and projects the
GROUP BY tags (missing tag = ``''``) and the fields the query reads; Arrow computes each row's
GROUP BY time window; every call is one SQL over the scan (InfluxDB evaluates each call on the
points where its own field exists, so calls do not share a row filter); the per-call results
are joined on (series, window), filled (:mod:`query_api.influxql.fill`) and the field
expressions evaluated (:mod:`query_api.influxql.expressions`).

The result is a :class:`MeasurementResult`: one table sorted in output order with the group
tags, ``__time`` and the output columns, plus where each series starts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from query_api import sql_guard
from query_api.influxql import arrow_scan, ast
from query_api.influxql.arrowutil import arange, arrow_type, lookup, run_starts
from query_api.influxql.conditions import compile_condition, quote_ident
from query_api.influxql.expressions import evaluate
from query_api.influxql.functions import REGISTRY, SELECTOR_SQL
from query_api.influxql.fill import fill_column
from query_api.influxql.planner import CallSpec, OutputColumn, SelectPlan
from query_api.influxql.series_calls import integral_table, multi_point_table
from query_api.influxql.transform_exec import apply_transform
from query_api.influxql.timeutil import MIN_TIME, window_grid, window_start, window_starts

TIME = "__time"


class ExecutionError(ValueError):
    pass


@dataclass(frozen=True)
class MeasurementResult:
    """Rows of one measurement in output order; ``starts`` are the series' first rows."""

    table: pa.Table           # __g0.. (group tags), __time (int64 ns), __o0.. (outputs)
    group_tags: tuple[str, ...]
    starts: tuple[int, ...]


def _g(i: int) -> str:
    return f"__g{i}"


def _o(i: int) -> str:
    return f"__o{i}"


def _sql(ctx: datafusion.SessionContext, query: str) -> pa.Table:
    try:
        table = sql_guard.plan(ctx, query).to_arrow_table()
    except Exception as exc:  # DataFusion raises plain Exceptions
        raise ExecutionError(str(sql_guard.query_error(exc))) from exc
    return plain_strings(table)


def plain_strings(table: pa.Table) -> pa.Table:
    """Utf8View/LargeUtf8 columns (DataFusion may produce them) as plain strings, which every
    Arrow kernel and join accepts."""
    for i, f in enumerate(table.schema):
        if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return table


#: Below this many rows a measurement's plans run unpartitioned.
SMALL_ROWS = 500_000


def _context(table: pa.Table, name: str) -> datafusion.SessionContext:
    ctx = sql_guard.new_session(1 if table.num_rows < SMALL_ROWS else None)
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    ctx.register_record_batches(name, [batches])
    return ctx


def _kinds_present(kinds: dict[str, str], table: pa.Table) -> dict[str, str]:
    names = set(table.column_names)
    return {k: v for k, v in kinds.items() if k in names}


def _bounds(plan: SelectPlan, now_ns: int, extended: bool = True
            ) -> tuple[int | None, int | None]:
    """The time range read: the query's, widened by ``plan.extend`` on the side the
    transformations start from (1.x reads one more window for them)."""
    lo, hi = plan.time_range.lower, plan.time_range.upper
    if plan.aggregate and plan.interval and hi is None:
        hi = now_ns
    if extended and plan.extend:
        if plan.descending and hi is not None:
            hi += plan.extend
        elif not plan.descending and lo is not None and lo != MIN_TIME:
            lo -= plan.extend
    return lo, hi


def read_range(plan: SelectPlan, now_ns: int) -> tuple[int | None, int | None]:
    """What the source must load for ``plan`` (inclusive ns bounds, None: open)."""
    return _bounds(plan, now_ns)


def _where(plan: SelectPlan, kinds: dict[str, str], now_ns: int, extra: list[str]) -> str:
    lo, hi = _bounds(plan, now_ns)
    parts = []
    if lo is not None:
        parts.append(f'CAST("time" AS BIGINT) >= {lo}')
    if hi is not None:
        parts.append(f'CAST("time" AS BIGINT) <= {hi}')
    if plan.condition is not None:
        parts.append(compile_condition(plan.condition, kinds, now_ns, plan.location))
    parts.extend(extra)
    return " WHERE " + " AND ".join(parts) if parts else ""


def _group_columns(plan: SelectPlan, kinds: dict[str, str]) -> list[str]:
    return [f"COALESCE({quote_ident(t)}, '') AS {_g(i)}" if kinds.get(t) == "tag"
            else f"'' AS {_g(i)}" for i, t in enumerate(plan.group_tags)]


def _split(table: pa.Table, plan: SelectPlan) -> MeasurementResult:
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    starts = run_starts(table, gcols) if table.num_rows else []
    return MeasurementResult(table=table, group_tags=plan.group_tags, starts=tuple(starts))


def _limit_series(table: pa.Table, plan: SelectPlan) -> pa.Table:
    """Per-series OFFSET/LIMIT on a table already in output order: each row's rank in its
    series from the series' first rows, one filter."""
    if not (plan.limit or plan.offset_rows) or table.num_rows == 0:
        return table
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    n = table.num_rows
    starts = np.asarray(run_starts(table, gcols), dtype=np.int64)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    keep = rank >= plan.offset_rows
    if plan.limit:
        keep &= rank < plan.offset_rows + plan.limit
    return table if keep.all() else table.filter(pa.array(keep))


# ---- raw queries ------------------------------------------------------------------------


def run_raw(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int
            ) -> MeasurementResult | None:
    kinds = _kinds_present(kinds, table)
    read = [f for f in plan.fields_read if f in kinds]
    if not read:
        return None
    refs = sorted({r.name for c in plan.columns for r in ast.walk(c.expr)
                   if isinstance(r, ast.VarRef) and r.name in kinds})
    tags_sorted = sorted(k for k, v in kinds.items() if v == "tag")
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    rows = _raw_rows_arrow(plan, table, kinds, now_ns, read, refs, tags_sorted)
    if rows is None:
        rows = _raw_rows_sql(plan, table, kinds, now_ns, read, refs, tags_sorted)
    if rows.num_rows == 0:
        return None
    columns = {name: rows.column(f"__v{i}").combine_chunks() for i, name in enumerate(refs)}
    out = [rows.column(g) for g in gcols] + [rows.column("__time")]
    names = gcols + [TIME]
    for i, col in enumerate(plan.columns):
        out.append(evaluate(col.expr, columns, rows.num_rows))
        names.append(_o(i))
    return _split(pa.table(out, names=names), plan)


#: Raw queries other than "the newest (oldest) point of each series" sort every row; above
#: this many rows DataFusion's sort does that, below it Arrow's (no plan to build).
ARROW_RAW_ROWS = 100_000


def _raw_rows_arrow(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int,
                    read: list[str], refs: list[str], tags_sorted: list[str]) -> pa.Table | None:
    """The rows :func:`_raw_rows_sql` gives, in Arrow, for a WHERE clause of tag comparisons
    (or none): ``__time``, the group columns, ``__v*`` and ``__k*``, in output order. With
    ``LIMIT 1`` only the rows as new (old) as the oldest (newest) series' last (first) point are
    sorted -- from the time bounds of the runs of each group, as :func:`_edge_rows` does; None
    for the shapes left to SQL."""
    first_only = (plan.limit, plan.offset_rows) == (1, 0)
    if not first_only and table.num_rows > ARROW_RAW_ROWS:
        return None
    mask = None
    if plan.condition is not None:
        mask = arrow_scan.tag_mask(plan.condition, table, kinds)
        if mask is None:
            return None
    present = None
    for name in read:
        column = table.column(name)
        if column.null_count == 0:
            present = None
            break
        valid = pc.is_valid(column)
        present = valid if present is None else pc.or_(present, valid)
    if present is not None:
        mask = present if mask is None else pc.and_(mask, present)
    rows = arrow_scan.rows_where(table, *_bounds(plan, now_ns), mask)
    group_cols = {_g(i): ("tag", t) if kinds.get(t) == "tag" else ("const", None)
                  for i, t in enumerate(plan.group_tags)}
    keyed = arrow_scan.scan(rows, None, None, None, group_cols)
    if keyed.num_rows == 0:
        return keyed
    if first_only:
        edge = np.flatnonzero(arrow_scan.edge_rows(keyed, list(group_cols), plan.descending))
        # a few rows: gathered, not filtered
        keyed, rows = arrow_scan.take_sorted(keyed, edge), arrow_scan.take_sorted(rows, edge)
    columns = {f"__v{i}": ("value", name) for i, name in enumerate(refs)}
    columns.update({f"__k{i}": ("tag", t) for i, t in enumerate(tags_sorted)})
    picked = arrow_scan.scan(rows, None, None, None, columns)
    for name in group_cols:
        picked = picked.append_column(name, keyed.column(name))
    direction = "descending" if plan.descending else "ascending"
    order = ([(g, direction) for g in group_cols] + [("__time", direction)]
             + [(f"__k{i}", "ascending") for i in range(len(tags_sorted))])
    picked = picked.take(pc.sort_indices(picked, sort_keys=order))
    if plan.limit or plan.offset_rows:
        picked = _limit_series(picked, plan)
    return picked


def _raw_rows_sql(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int,
                  read: list[str], refs: list[str], tags_sorted: list[str]) -> pa.Table:
    cols = ['CAST("time" AS BIGINT) AS "__time"'] + _group_columns(plan, kinds)
    cols += [f"{quote_ident(name)} AS \"__v{i}\"" for i, name in enumerate(refs)]
    # ties on time within a series: series key order (see docs/influxql.md)
    cols += [f"COALESCE({quote_ident(t)}, '') AS \"__k{i}\"" for i, t in enumerate(tags_sorted)]
    present = " OR ".join(f"{quote_ident(f)} IS NOT NULL" for f in read)
    where = _where(plan, kinds, now_ns, [f"({present})"])
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    direction = "DESC" if plan.descending else "ASC"
    within = [f'"__time" {direction}'] + [f'"__k{i}" ASC' for i in range(len(tags_sorted))]
    scan = f"SELECT {', '.join(cols)} FROM m{where}"
    ctx = _context(table, "m")
    if plan.limit or plan.offset_rows:
        partition = f"PARTITION BY {', '.join(gcols)} " if gcols else ""
        first_only = (plan.limit, plan.offset_rows) == (1, 0)
        source = _edge_rows(ctx, scan, gcols, plan) if first_only else scan
        ranked = (f"SELECT *, row_number() OVER ({partition}ORDER BY {', '.join(within)}) "
                  f"AS __rn FROM ({source})")
        upper = f" AND __rn <= {plan.offset_rows + plan.limit}" if plan.limit else ""
        order = [f"{g} {direction}" for g in gcols] + ["__rn ASC"]
        query = f"SELECT * FROM ({ranked}) WHERE __rn > {plan.offset_rows}{upper}"
    else:
        order = [f"{g} {direction}" for g in gcols] + within
        query = scan
    query += f" ORDER BY {', '.join(order)}"
    return _sql(ctx, query)


def _edge_rows(ctx: datafusion.SessionContext, scan: str, gcols: list[str],
               plan: SelectPlan) -> str:
    """``scan`` narrowed to the rows a query with ``LIMIT 1`` can return: none is older (newer,
    ascending) than the earliest of the series' last (first) times, which a hash aggregate over
    two columns finds. For the usual "last point of each series" that leaves a few rows to
    rank instead of a sort of every row; the ranking that follows stays exact either way."""
    inner, outer, op = ("max", "min", ">=") if plan.descending else ("min", "max", "<=")
    group = f" GROUP BY {', '.join(gcols)}" if gcols else ""
    bound = _sql(ctx, f'SELECT {outer}("__e") FROM (SELECT {inner}("__time") AS "__e" '
                      f"FROM ({scan}){group})").column(0)[0].as_py()
    return scan if bound is None else f'SELECT * FROM ({scan}) WHERE "__time" {op} {bound}'


# ---- aggregate queries ------------------------------------------------------------------


def _call_sql(call: CallSpec, value: str, keys: list[str], aux: list[str], point: bool) -> str:
    """One call over the ``scan`` table: rows (keys..., __val[, __pt, aux...]); ``point``
    asks selectors for the selected point's time (``__pt``) and ``aux`` columns."""
    k = ", ".join(keys)
    v = f'"{value}"'
    f = call.func
    base = f"FROM scan WHERE {v} IS NOT NULL"
    entry = REGISTRY[f]
    simple = {f: entry.sql(v)} if entry.sql is not None and entry.kind == "aggregate" else {}
    if call.count_distinct:
        return f"SELECT {k}, count(DISTINCT {v}) AS __val {base} GROUP BY {k}"
    if not point and f in SELECTOR_SQL:
        # the selected point's time and fields are not needed: plain (ordered) aggregates
        simple = {f: SELECTOR_SQL[f](v)}
    if f in simple:
        return f"SELECT {k}, {simple[f]} AS __val {base} GROUP BY {k}"
    part = f"PARTITION BY {k}"
    if f == "median":
        ranked = (f"SELECT {k}, CAST({v} AS DOUBLE) AS x, row_number() OVER ({part} ORDER BY "
                  f"{v}, \"__time\") AS rn, count(*) OVER ({part}) AS n {base}")
        lo = "max(CASE WHEN rn = n / 2 THEN x END)"
        hi = "max(CASE WHEN rn = n / 2 + 1 THEN x END)"
        mid = "max(CASE WHEN rn = (n + 1) / 2 THEN x END)"
        return (f"SELECT {k}, CASE WHEN max(n) % 2 = 1 THEN {mid} ELSE {lo} + ({hi} - {lo}) / 2 "
                f"END AS __val FROM ({ranked}) GROUP BY {k}")
    if f == "mode":
        # the most frequent value; 1.x's scan over the sorted values keeps the smallest when
        # every value is unique, else (on ties) usually the largest -- see docs/influxql.md
        counted = f"SELECT {k}, {v} AS x, count(*) AS c {base} GROUP BY {k}, {v}"
        ranked = (f"SELECT {k}, x, row_number() OVER ({part} ORDER BY c DESC, x DESC) AS rn_desc, "
                  f"row_number() OVER ({part} ORDER BY x ASC) AS rn_asc, "
                  f"max(c) OVER ({part}) AS top FROM ({counted})")
        return (f"SELECT {k}, x AS __val FROM ({ranked}) WHERE (top = 1 AND rn_asc = 1) OR "
                f"(top > 1 AND rn_desc = 1)")
    if f == "distinct":
        return (f"SELECT {k}, {v} AS __val, min(\"__time\") AS __first {base} "
                f"GROUP BY {k}, {v}")
    extra = "".join(f", {a}" for a in aux)
    if f == "percentile":
        ranked = (f"SELECT {k}, {v} AS __val, \"__time\" AS __pt{extra}, row_number() OVER "
                  f"({part} ORDER BY {v}, \"__time\") AS rn, count(*) OVER ({part}) AS n {base}")
        pick = f"CAST(floor(CAST(n AS DOUBLE) * {call.percentile!r} / 100.0 + 0.5) AS BIGINT)"
        return (f"SELECT {k}, __val, __pt{''.join(', ' + a for a in aux)} FROM ({ranked}) "
                f"WHERE rn = {pick}")
    order = {"first": f"\"__time\" ASC, {v} DESC", "last": f"\"__time\" DESC, {v} DESC",
             "min": f"{v} ASC, \"__time\" ASC", "max": f"{v} DESC, \"__time\" ASC"}[f]
    ranked = (f"SELECT {k}, {v} AS __val, \"__time\" AS __pt{extra}, row_number() OVER "
              f"({part} ORDER BY {order}) AS rn {base}")
    return f"SELECT {k}, __val, __pt{''.join(', ' + a for a in aux)} FROM ({ranked}) WHERE rn = 1"


@dataclass(frozen=True)
class _Scan:
    """The filtered rows of an aggregate query with their windows (``__w``) and the internal
    names of the fields (``__v*``) and auxiliary fields (``__a*``) they carry."""

    table: pa.Table
    value_of: dict[str, str]
    aux_of: dict[str, str]
    gcols: list[str]
    series: list[str]        # ``__s*``: the other tags, where a group may hold several series

    @property
    def keys(self) -> list[str]:
        return self.gcols + ["__w"]


def _aggregate_scan(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int
                    ) -> _Scan | None:
    fields = sorted({c.field for c in plan.calls if kinds.get(c.field) not in (None, "tag")})
    if not fields:
        return None
    value_of = {name: f"__v{i}" for i, name in enumerate(fields)}
    aux_of = {name: f"__a{i}" for i, name in enumerate(plan.aux)}
    # a mean, or a sum of floats, reduces each series of a group on its own (1.x's
    # arithmetic): it needs the tags that tell the series of a group apart (integer sums are
    # exact in any order)
    split = any(c.func == "mean" or (c.func == "sum" and kinds.get(c.field) == "float")
                for c in plan.calls)
    others = sorted(t for t, k in kinds.items() if k == "tag" and t not in plan.group_tags
                    ) if split else []
    series_of = {t: f"__s{i}" for i, t in enumerate(others)}
    mask = None if plan.condition is None else arrow_scan.tag_mask(plan.condition, table, kinds)
    if not plan.aux and (plan.condition is None or mask is not None):  # no SQL needed
        lo, hi = _bounds(plan, now_ns)
        columns = {_g(i): ("tag", t) if kinds.get(t) == "tag" else ("const", None)
                   for i, t in enumerate(plan.group_tags)}
        columns.update({value_of[n]: ("value", n) for n in fields})
        columns.update({series_of[t]: ("tag", t) for t in others})
        scan = arrow_scan.scan(table, lo, hi, mask, columns)
    else:
        cols = ['CAST("time" AS BIGINT) AS "__time"'] + _group_columns(plan, kinds)
        cols += [f"{quote_ident(n)} AS \"{value_of[n]}\"" for n in fields]
        cols += [f"{quote_ident(n)} AS \"{aux_of[n]}\"" if n in kinds
                 else f"CAST(NULL AS VARCHAR) AS \"{aux_of[n]}\"" for n in plan.aux]
        cols += [f"COALESCE({quote_ident(t)}, '') AS \"{series_of[t]}\"" for t in others]
        scan = _sql(_context(table, "m"),
                    f"SELECT {', '.join(cols)} FROM m{_where(plan, kinds, now_ns, [])}")
    if scan.num_rows == 0:
        return None
    lo, _ = _bounds(plan, now_ns)
    if plan.interval:
        windows = window_starts(scan.column(TIME).combine_chunks(), plan.interval, plan.offset,
                                plan.location)
    else:  # one window: the query's start (the epoch without a lower bound)
        start = 0 if lo is None or lo == MIN_TIME else lo
        windows = pa.repeat(pa.scalar(start, pa.int64()), scan.num_rows)
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    return _Scan(scan.append_column("__w", windows), value_of, aux_of, gcols,
                 list(series_of.values()))


def run_aggregate(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int
                  ) -> MeasurementResult | None:
    kinds = _kinds_present(kinds, table)
    scan = _aggregate_scan(plan, table, kinds, now_ns)
    if scan is None:
        return None
    if plan.multi is not None:
        return _multi_result(plan, scan)
    sctx: datafusion.SessionContext | None = None
    grouped: arrow_scan.Groups | None = None
    parts: arrow_scan.SeriesParts | None = None
    results: list[tuple[CallSpec, pa.Table | None]] = []
    for call in plan.calls:
        if call.field not in scan.value_of:
            results.append((call, None))
            continue
        value = scan.value_of[call.field]
        if call.func == "integral":
            results.append((call, integral_table(scan.table, value, scan.gcols, plan.interval,
                                                 call)))
            continue
        # the selected point's time and fields: only without GROUP BY time or with fields
        point = call is plan.selector and (not plan.interval or bool(plan.aux))
        if arrow_scan.arrow_call(call.func, call.count_distinct, point,
                                 scan.table.schema.field(value).type):
            if grouped is None:
                grouped = arrow_scan.groups(scan.table, scan.keys)
                parts = arrow_scan.series_parts(scan.table, scan.keys, scan.series, grouped)
            results.append((call, arrow_scan.aggregate(scan.table, call.func, value, grouped,
                                                       parts)))
            continue
        sctx = sctx or _context(scan.table, "scan")
        aux_cols = [f"\"{scan.aux_of[a]}\"" for a in plan.aux] if point else []
        results.append((call, _sql(sctx, _call_sql(call, value, scan.keys, aux_cols, point))))
    present = [(c, t) for c, t in results if t is not None and t.num_rows]
    if not present:
        return None
    if plan.distinct:
        return _distinct_result(plan, present[0][1], scan.gcols)
    return _combine(plan, scan, results, present, kinds, now_ns)


def _multi_result(plan: SelectPlan, scan: _Scan) -> MeasurementResult | None:
    """top/bottom/sample: every selected point is a row at its own time."""
    call = plan.multi
    assert call is not None
    if call.field not in scan.value_of:
        return None
    aux = [f'"{scan.aux_of[a]}"' for a in plan.aux]
    table = multi_point_table(scan.table, call, scan.value_of[call.field], scan.keys, aux,
                              [f'"{scan.aux_of[t]}"' for t in call.tags], plan.descending)
    if table.num_rows == 0:
        return None
    columns = {call.key: table.column("__val").combine_chunks()}
    for name in plan.aux:
        columns[name] = table.column(scan.aux_of[name]).combine_chunks()
    out = [table.column(g) for g in scan.gcols] + [table.column("__pt")]
    names = scan.gcols + [TIME]
    for i, col in enumerate(plan.columns):
        out.append(evaluate(col.expr, columns, table.num_rows))
        names.append(_o(i))
    result = pa.table(out, names=names)
    return _split(_limit_series(result, plan), plan)


def _combine(plan: SelectPlan, scan: _Scan, results: list[tuple[CallSpec, pa.Table | None]],
             present: list[tuple[CallSpec, pa.Table]], kinds: dict[str, str], now_ns: int
             ) -> MeasurementResult:
    """Join the calls' results on (series, window) -- over every window of the range when
    GROUP BY time fills -- fill them and evaluate the output columns."""
    gcols, keys = scan.gcols, scan.keys
    lo, hi = _bounds(plan, now_ns)
    grid = plan.interval > 0 and plan.fill.mode != "none"
    start_w: int | None = None
    if grid:
        end_w = window_start(hi, plan.interval, plan.offset, plan.location)
        start_w = (None if lo is None or lo == MIN_TIME
                   else window_start(lo, plan.interval, plan.offset, plan.location))
        frame = _grid_frame(present, gcols, start_w, end_w, plan)
    else:
        frame = _key_frame(present, keys)
    frame = frame.sort_by([(k, "ascending") for k in keys])
    frame = frame.append_column("__row", arange(frame.num_rows))
    series_ids = _series_ids(frame, gcols)
    windows = frame.column("__w").combine_chunks()
    columns: dict[str, pa.Array] = {}
    for call, res in results:
        active = None
        if res is None or res.num_rows == 0:
            values = pa.nulls(frame.num_rows, _call_type(call, kinds))
        else:
            named = res.rename_columns([c if c != "__val" else call.key
                                        for c in res.column_names])
            rows = lookup(frame, res, keys)
            joined = named.take(rows) if rows is not None else frame.select(
                keys + ["__row"]).join(named, keys=keys, join_type="left outer").sort_by("__row")
            values = joined.column(call.key).combine_chunks()
            if grid:
                active = _active_mask(frame, res, gcols, start_w)
            if call is plan.selector and "__pt" in joined.column_names:
                columns["__pt"] = joined.column("__pt").combine_chunks()
                for name in plan.aux:
                    columns[name] = fill_column(
                        joined.column(scan.aux_of[name]).combine_chunks(), windows, series_ids,
                        None, plan.fill, descending=plan.descending, interpolate=False)
        if call.func == "integral":  # 1.x never fills integral: it has points where it has data
            columns[call.key] = values
            continue
        columns[call.key] = fill_column(values, windows, series_ids, active, plan.fill,
                                        is_count=call.func == "count",
                                        descending=plan.descending, interpolate=grid)
    n = frame.num_rows
    # a lone selector reports its point's time, unless GROUP BY time labels the windows
    selector_time = plan.selector is not None and not plan.interval and "__pt" in columns
    out = [frame.column(g) for g in gcols] + [columns["__pt"] if selector_time else windows]
    names = gcols + [TIME]
    if plan.descending:
        order = _reverse(n)
        out = [pc.take(c, order) for c in out]
        columns = {k: pc.take(v, order) for k, v in columns.items()}
    keep = None
    sparse = [c.key for c in plan.calls if c.func == "integral"]
    if plan.transforms or sparse:
        keep = _transform_columns(plan, columns, pa.table(out, names=names), gcols, now_ns,
                                  sparse)
    for i, col in enumerate(plan.columns):
        out.append(evaluate(col.expr, columns, n))
        names.append(_o(i))
    result = pa.table(out, names=names)
    if keep is not None:
        result = result.filter(keep)
    return _split(_limit_series(result, plan), plan)


def _transform_columns(plan: SelectPlan, columns: dict[str, pa.Array], keyed: pa.Table,
                       gcols: list[str], now_ns: int, sparse: list[str]) -> pa.Array:
    """Add each transformation's column (over its call's filled values, per series in output
    order); the rows to keep: inside the query's range (not the extra window read for the
    transformations) and where some column has a point."""
    times = keyed.column(TIME).combine_chunks()
    starts = run_starts(keyed, gcols) if keyed.num_rows else []
    masks: dict[str, np.ndarray] = {
        key: np.asarray(columns[key].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        for key in sparse}  # calls without fill: a point only where they have a value
    for spec in plan.transforms:
        values, mask = apply_transform(spec, columns[spec.source], times, starts)
        columns[spec.key] = values
        masks[spec.key] = mask
    keep = _emitting_rows(plan, masks, keyed.num_rows)
    if plan.extend:
        lo, hi = _bounds(plan, now_ns, extended=False)
        if plan.descending and hi is not None:
            edge = window_start(hi, plan.interval, plan.offset, plan.location)
            inside = pc.less_equal(times, edge)
        elif lo is not None and lo != MIN_TIME:
            edge = window_start(lo, plan.interval, plan.offset, plan.location)
            inside = pc.greater_equal(times, edge)
        else:
            inside = None
        if inside is not None:
            keep = pc.and_(keep, inside)
    return keep


def _emitting_rows(plan: SelectPlan, masks: dict[str, np.ndarray], n: int) -> pa.Array:
    """A row exists where any output column has a point: a column without transformations
    has one on every row, a transformed column where one of its transformations emits."""
    keep = np.zeros(n, dtype=bool)
    for col in plan.columns:
        keys = [r.name for r in ast.walk(col.expr)
                if isinstance(r, ast.VarRef) and r.name in masks]
        if not keys:
            return pa.array(np.ones(n, dtype=bool))
        for key in keys:
            keep |= masks[key]
    return pa.array(keep)


def run_raw_transform(plan: SelectPlan, table: pa.Table, kinds: dict[str, str], now_ns: int
                      ) -> MeasurementResult | None:
    """Transformations of raw fields: the fields' points per series (a raw query), each
    transformation over its own field's points, rows where one of them emits."""
    fields = [f for f in plan.fields_read if f in kinds]
    inner = replace(plan, columns=tuple(OutputColumn(f, ast.VarRef(f)) for f in fields),
                    limit=0, offset_rows=0, transforms=())
    res = run_raw(inner, table, kinds, now_ns)
    if res is None:
        return None
    rows = res.table
    gcols = [_g(i) for i in range(len(plan.group_tags))]
    columns = {f: rows.column(_o(i)).combine_chunks() for i, f in enumerate(fields)}
    times = rows.column(TIME).combine_chunks()
    masks: dict[str, np.ndarray] = {}
    for spec in plan.transforms:
        source = columns.get(spec.source)
        if source is None:
            source = pa.nulls(rows.num_rows, pa.float64())
        columns[spec.key], masks[spec.key] = apply_transform(spec, source, times,
                                                             list(res.starts))
    out = [rows.column(g) for g in gcols] + [times]
    names = gcols + [TIME]
    for i, col in enumerate(plan.columns):
        out.append(evaluate(col.expr, columns, rows.num_rows))
        names.append(_o(i))
    result = pa.table(out, names=names).filter(_emitting_rows(plan, masks, rows.num_rows))
    if result.num_rows == 0:
        return None
    return _split(_limit_series(result, plan), plan)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns differ only in nullability flags."""
    schema = pa.schema([f.with_nullable(True) for f in tables[0].schema])
    return pa.concat_tables([t.cast(schema) for t in tables])


def _reverse(n: int) -> pa.Array:
    return pc.subtract(n - 1, arange(n))


def _distinct_result(plan: SelectPlan, res: pa.Table, gcols: list[str]) -> MeasurementResult:
    order = [(g, "ascending") for g in gcols] + [("__w", "ascending"), ("__first", "ascending"),
                                                  ("__val", "ascending")]
    res = res.sort_by(order)
    out = [res.column(g) for g in gcols] + [res.column("__w")]
    names = gcols + [TIME]
    columns = {plan.calls[0].key: res.column("__val").combine_chunks()}
    for i, col in enumerate(plan.columns):
        out.append(evaluate(col.expr, columns, res.num_rows))
        names.append(_o(i))
    result = pa.table(out, names=names)
    if plan.descending:
        result = result.take(_reverse(result.num_rows))
    return _split(_limit_series(result, plan), plan)


def _key_frame(present: list[tuple[CallSpec, pa.Table]], keys: list[str]) -> pa.Table:
    """Distinct (series, window) keys over all calls' results."""
    if len(present) == 1:
        return present[0][1].select(keys)
    merged = _concat([t.select(keys) for _, t in present])
    return merged.group_by(keys).aggregate([])


def _series_ids(frame: pa.Table, gcols: list[str]) -> pa.Array:
    """Dense int64 id per row of a frame sorted by series (equal ids = same series)."""
    n = frame.num_rows
    starts = run_starts(frame, gcols) if n else []
    marks = pc.is_in(arange(n), value_set=pa.array(starts, pa.int64())) if n else pa.array(
        [], pa.bool_())
    return pc.subtract(pc.cumulative_sum(marks.cast(pa.int64())), 1) if n else pa.array(
        [], pa.int64())


def _grid_frame(present: list[tuple[CallSpec, pa.Table]], gcols: list[str],
                start_w: int | None, end_w: int, plan: SelectPlan) -> pa.Table:
    """Every window from each series' first window (the query's start window, or without a
    lower time bound the series' first window with data) to the window of the end time."""
    keyed = _concat([t.select(gcols + ["__w"]) for _, t in present])
    if gcols:
        series = keyed.group_by(gcols).aggregate([("__w", "min")]).sort_by(
            [(g, "ascending") for g in gcols])
        firsts = series.column("__w_min").combine_chunks()
    else:
        series = pa.table({})
        firsts = pa.array([pc.min(keyed.column("__w")).as_py()], pa.int64())
    if start_w is not None:
        firsts = pa.repeat(pa.scalar(start_w, pa.int64()), len(firsts))
    first_all = pc.min(firsts).as_py()
    grid = window_grid(first_all, end_w, plan.interval, plan.offset, plan.location)
    n_series, n_grid = len(firsts), len(grid)
    idx = arange(n_series * n_grid)
    s_idx = pc.divide(idx, n_grid) if n_grid else idx
    w_idx = pc.subtract(idx, pc.multiply(s_idx, n_grid)) if n_grid else idx
    windows = pc.take(grid, w_idx)
    keep = pc.greater_equal(windows, pc.take(firsts, s_idx))
    s_idx, windows = pc.filter(s_idx, keep), pc.filter(windows, keep)
    cols = [pc.take(series.column(g), s_idx) for g in gcols] + [windows]
    frame = pa.table(cols, names=gcols + ["__w"])
    # a window with data is always a row, even where DST makes 1.x's grid step past it (data
    # windows on the grid are rows already: they are at or after their series' first window)
    off_grid = keyed.filter(pc.invert(pc.is_in(keyed.column("__w"), value_set=grid)))
    if off_grid.num_rows == 0:
        return frame
    return _concat([frame, off_grid.group_by(gcols + ["__w"]).aggregate([])])


def _active_mask(frame: pa.Table, res: pa.Table, gcols: list[str], start_w: int | None
                 ) -> pa.Array:
    """Rows where a call's own fill iterator runs in 1.x (what makes ``count`` read 0): its
    series has points for the call, from the call's first window -- or the query's start
    window when the WHERE clause has a lower time bound -- on."""
    if gcols:
        firsts = res.group_by(gcols).aggregate([("__w", "min")])
        rows = lookup(frame, firsts, gcols)
        if rows is not None:
            first = firsts.column("__w_min").combine_chunks().take(rows)
        else:
            joined = frame.select(gcols + ["__w", "__row"]).join(
                firsts.select(gcols + ["__w_min"]).rename_columns(gcols + ["__first"]),
                keys=gcols, join_type="left outer").sort_by("__row")
            first = joined.column("__first").combine_chunks()
    else:
        first = pa.repeat(pa.scalar(pc.min(res.column("__w")).as_py(), pa.int64()),
                          frame.num_rows)
    if start_w is not None:
        first = pc.if_else(pc.is_null(first), first, pa.scalar(start_w, pa.int64()))
    return pc.fill_null(pc.greater_equal(frame.column("__w").combine_chunks(), first), False)


def _call_type(call: CallSpec, kinds: dict[str, str]) -> pa.DataType:
    """The Arrow type of a call's values (for calls with no rows in a measurement)."""
    if call.count_distinct:
        return pa.int64()
    result = REGISTRY[call.func].result
    return arrow_type(result or kinds.get(call.field, "float"))
