"""Hot data costs in isolation (query_api/hot_data.py): indexing one buffer snapshot, and taking
a query's rows out of many indexed parts.

``python -m benchmarks.hot_parts [--parts 900]`` makes snapshots as the worker buffers them
(5 000 TSBS cpu lines of 100 hosts each: 10 string tags, 10 integer fields, time and the two
write order columns), then reports

- the time ``HotParts.part`` takes to index one (the median over 20 snapshots of the best of
  5 builds each),
- for ``--parts`` indexed parts (copies of those snapshots shifted in time, so they do not
  overlap, like ``make bench``'s ~900 buffered snapshots), the time ``select`` takes for one
  host over one hour (single-groupby-1-1-1's cut: first call, then -- once the background
  has sorted the rows the first call took out of order, where it does -- the median of 20) and for
  all series over all time (a ``count(*)``'s cut, median of 5).

It only uses what every version of the module has, so two checkouts compare back to back
(``PYTHONPATH=<checkout> python -m benchmarks.hot_parts``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import pyarrow as pa

from benchmarks.tsbs import generate_lines
from influent.model import ORDER_SEQ, ORDER_TS
from query_api.hot_data import HotParts, select

LINES = 5_000
HOSTS = 100


def snapshot_tables(count: int, shift_ns: int = 0) -> list[pa.Table]:
    """``count`` snapshots of ``LINES`` lines each, parsed into the worker's columns."""
    hours = count * LINES / HOSTS * 10 / 3600 + 1
    lines = generate_lines(HOSTS, hours)
    out = []
    for n in range(count):
        rows = [next(lines) for _ in range(LINES)]
        cols: dict[str, list] = {}
        times = []
        for line in rows:
            series, fields, ts = line.split(" ")
            for pair in series.split(",")[1:]:
                k, v = pair.split("=", 1)
                cols.setdefault(k, []).append(v)
            for pair in fields.split(","):
                k, v = pair.split("=", 1)
                cols.setdefault(k, []).append(int(v.rstrip("i")))
            times.append(int(ts) + shift_ns)
        table = {k: pa.array(v, pa.string() if isinstance(v[0], str) else pa.int64())
                 for k, v in sorted(cols.items())}
        table["time"] = pa.array(times, pa.timestamp("ns"))
        table[ORDER_TS] = pa.array([n] * LINES, pa.int64())
        table[ORDER_SEQ] = pa.array([n * 2**20 + i for i in range(LINES)], pa.int64())
        out.append(pa.table(table))
    return out


def tag_names(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_string(f.type)]


def build_ms(tables: list[pa.Table]) -> float:
    tags = tag_names(tables[0])
    best = []
    for i, table in enumerate(tables):
        runs = []
        for r in range(5):
            hot = HotParts(10**10)  # a fresh cache: every call builds
            t0 = time.perf_counter()
            hot.part(("s", i, r), lambda t=table: t, tags, unique=False)
            runs.append(time.perf_counter() - t0)
        best.append(min(runs))
    return statistics.median(best) * 1000


def select_ms(tables: list[pa.Table], parts_count: int) -> dict:
    tags = tag_names(tables[0])
    hot = HotParts(10**11)
    span = 10**14  # beyond the snapshots' own time span: the copies never share a timestamp
    parts = []
    for i in range(parts_count):
        base = tables[i % len(tables)]
        shifted = base.set_column(base.schema.get_field_index("time"), "time", pa.array(
            base.column("time").cast(pa.int64()).to_numpy() + (i // len(tables)) * span,
            pa.timestamp("ns")))
        parts.append(hot.part(("p", i), lambda t=shifted: t, tags, unique=False))
    host = tables[0].column("hostname")[0].as_py()
    wanted = hot.registry.matching({"hostname": frozenset({host})})
    lo = int(parts[len(parts) // 2].distinct[0])
    hi = lo + 3600 * 10**9
    t0 = time.perf_counter()
    first = select(parts, lo, hi, wanted)
    first_s = time.perf_counter() - t0
    for part in getattr(first, "unsorted", []):  # what the API's background does next
        part.sorted()
    one = []
    for _ in range(20):
        t0 = time.perf_counter()
        select(parts, lo, hi, wanted)
        one.append(time.perf_counter() - t0)
    every = []
    for _ in range(5):
        t0 = time.perf_counter()
        select(parts, None, None, None)
        every.append(time.perf_counter() - t0)
    return {"one_host_first_ms": first_s * 1000, "one_host_ms": statistics.median(one) * 1000,
            "one_host_rows": first.rows, "all_series_ms": statistics.median(every) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=900)
    args = parser.parse_args()
    tables = snapshot_tables(20)
    print(f"index one snapshot of {LINES} lines: {build_ms(tables):.2f} ms", flush=True)
    sel = select_ms(tables, args.parts)
    print(f"select over {args.parts} parts: one host, one hour: first {sel['one_host_first_ms']:.2f}"
          f" ms, then {sel['one_host_ms']:.2f} ms ({sel['one_host_rows']} rows); all series: "
          f"{sel['all_series_ms']:.2f} ms")


if __name__ == "__main__":
    main()
