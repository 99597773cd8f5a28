"""Calls that are not one SQL aggregate per (series, window): ``integral`` (trapezoids in time
order, split at window ends, as 1.x computes them) and the multi-point selectors ``top``,
``bottom`` and ``sample`` (several points per window, each with its own time and auxiliary
fields).

Input is the aggregate scan: group tag columns (``__g*``), ``__time``, the windows (``__w``),
the call's field and the auxiliary fields.
"""
from __future__ import annotations

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql.arrowutil import run_starts
from query_api.influxql.functions import SAMPLE_SEED, integral_contributions
from query_api.influxql.planner import CallSpec

TIME = "__time"


def integral_table(scan: pa.Table, value: str, gcols: list[str], interval: int,
                   call: CallSpec) -> pa.Table:
    """(group tags, ``__w``, ``__val``): the time-integral per series and window."""
    rows = scan.filter(pc.is_valid(scan.column(value))).sort_by(
        [(g, "ascending") for g in gcols] + [(TIME, "ascending")])
    empty = pa.table({**{g: pa.array([], pa.string()) for g in gcols},
                      "__w": pa.array([], pa.int64()), "__val": pa.array([], pa.float64())})
    if rows.num_rows == 0:
        return empty
    values = np.asarray(rows.column(value).to_numpy(), dtype=np.float64)
    times = np.asarray(rows.column(TIME).to_numpy(), dtype=np.int64)
    windows = np.asarray(rows.column("__w").to_numpy(), dtype=np.int64)
    ends = windows + interval if interval else np.full(len(windows), np.iinfo(np.int64).max)
    starts = run_starts(rows, gcols) + [rows.num_rows]
    series_idx, out_w, out_a = [], [], []
    for i, (begin, end) in enumerate(zip(starts, starts[1:])):  # one vectorised call per series
        w, a = integral_contributions(values[begin:end], times[begin:end], windows[begin:end],
                                      ends[begin:end], call.unit)
        last_time, last_window = times[end - 1], windows[end - 1]
        if interval and last_time == last_window:  # 1.x: no area in a window starting there
            keep = w != last_window
            w, a = w[keep], a[keep]
        series_idx.append(np.full(len(w), begin, dtype=np.int64))
        out_w.append(w)
        out_a.append(a)
    idx = np.concatenate(series_idx)
    parts = pa.table({**{g: pc.take(rows.column(g), pa.array(idx)) for g in gcols},
                      "__w": pa.array(np.concatenate(out_w)),
                      "__val": pa.array(np.concatenate(out_a))})
    if parts.num_rows == 0:
        return empty
    # per-window sums in order (a hash aggregate adds each group's values sequentially)
    summed = parts.group_by(gcols + ["__w"], use_threads=False).aggregate([("__val", "sum")])
    return summed.rename_columns(gcols + ["__w", "__val"])


def multi_point_table(scan: pa.Table, call: CallSpec, value: str, keys: list[str],
                      aux: list[str], tag_cols: list[str], descending: bool = False
                      ) -> pa.Table:
    """(keys, ``__val``, ``__pt``, aux...) of top/bottom/sample, sorted by series, window and
    point time. ``tag_cols`` (scan names of top/bottom's tag arguments) keep each tag value's
    best point before ranking, as 1.x does."""
    ctx = datafusion.SessionContext()
    if call.func == "sample":
        rng = np.random.default_rng(SAMPLE_SEED)
        scan = scan.append_column("__rand", pa.array(rng.random(scan.num_rows)))
    batches = scan.to_batches() or [pa.RecordBatch.from_pylist([], schema=scan.schema)]
    ctx.register_record_batches("scan", [batches])
    k = ", ".join(keys)
    v = f'"{value}"'
    extra = "".join(f", {a}" for a in aux)
    base = f"FROM scan WHERE {v} IS NOT NULL"
    if call.func == "sample":
        order = "__rand"
    else:
        order = f"{v} {'DESC' if call.func == 'top' else 'ASC'}, \"__time\" ASC"
    source = f"SELECT * {base}"
    if tag_cols:
        part = ", ".join(keys + tag_cols)
        source = (f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY "
                  f"{order}) AS __best {base}) WHERE __best = 1")
    ranked = (f"SELECT {k}, {v} AS __val, \"__time\" AS __pt{extra}, row_number() OVER "
              f"(PARTITION BY {k} ORDER BY {order}) AS __rn FROM ({source})")
    # ORDER BY time DESC reverses series and windows; points inside a window stay ascending
    direction = " DESC" if descending else ""
    order_keys = ", ".join(f"{key}{direction}" for key in keys)
    query = (f"SELECT {k}, __val, __pt{''.join(', ' + a for a in aux)} FROM ({ranked}) "
             f"WHERE __rn <= {call.n} ORDER BY {order_keys}, __pt, __rn")
    table = ctx.sql(query).to_arrow_table()
    for i, f in enumerate(table.schema):
        if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return table
