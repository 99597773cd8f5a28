"""CPU time of InfluxQL's computation alone, no server: TSBS-shaped rows in memory.

    python -m benchmarks.influxql_cpu [--hosts 200 --hours 12 --iterations 9]

Builds ``cpu`` (the TSBS tags, 10 integer fields, a point per host every 10 s, rows series
by series as the hot data gives them), then reports the median process CPU time (all threads;
robust to other jobs on the machine, unlike latency) of:

- ``double-groupby-1``: ``run_aggregate`` of ``mean(usage_user) ... GROUP BY time(1h),
  hostname`` over the last 12 hours;
- ``lastpoint``: ``run_raw`` of ``SELECT * ... GROUP BY hostname ORDER BY time DESC LIMIT 1``
  over every row;
- ``lastpoint, cached rows``: the same statement over the newest row of each host (what a
  last value cache hands over), per stage -- run, series, v1 body, JSON bytes -- and the whole
  ``execute_influxql`` + ``encode_json``.
"""
from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.tsbs import FIELDS, INTERVAL_NS, START_NS, make_hosts
from query_api.influxql import MemorySource, encode_json, execute_influxql
from query_api.influxql import select as sel
from query_api.influxql.executor import _series_of
from query_api.influxql.parser import parse_query
from query_api.influxql.planner import Schema, plan_select
from query_api.influxql.results import StatementResult, query_json

LASTPOINT = 'SELECT * from cpu group by "hostname" order by time desc limit 1'


def cpu_table(hosts: int, hours: float) -> pa.Table:
    ticks = int(hours * 3600 * 1e9 // INTERVAL_NS)
    tags: dict[str, list[str]] = {}
    for host in make_hosts(hosts, random.Random(123)):
        for pair in host.series.split(",")[1:]:
            key, value = pair.split("=")
            tags.setdefault(key, []).append(value)
    cols: dict[str, pa.Array] = {k: pa.array(np.repeat(np.array(v, dtype=object), ticks).tolist(),
                                              pa.string()) for k, v in tags.items()}
    rng = np.random.default_rng(1)
    for name in FIELDS:
        cols[name] = pa.array(rng.integers(0, 100, hosts * ticks))
    times = np.tile(START_NS + np.arange(ticks) * INTERVAL_NS, hosts)
    cols["time"] = pa.array(times.astype("datetime64[ns]"), pa.timestamp("ns"))
    return pa.table(cols)


def cpu_ms(run: Callable[[], object], iterations: int) -> float:
    spent = []
    for _ in range(iterations):
        t0 = time.process_time()
        run()
        spent.append(time.process_time() - t0)
    return statistics.median(spent) * 1000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command()
@click.option("--hosts", default=200, show_default=True)
@click.option("--hours", default=12.0, show_default=True)
@click.option("--iterations", default=9, show_default=True)
def main(hosts: int, hours: float, iterations: int) -> None:
    table = cpu_table(hosts, hours)
    end = START_NS + int(hours * 3600 * 1e9)
    now = end + 10**12
    src = MemorySource()
    src.add_table("db", "cpu", table)
    kinds = dict(asyncio.run(src.schema("db", "cpu")).columns)
    print(f"{table.num_rows:,} rows ({hosts} hosts x {hours} h); median CPU ms of "
          f"{iterations} runs")
    dg1 = (f"SELECT mean(usage_user) from cpu where time >= '{_iso(end - 12 * 3600 * 10**9)}' "
           f"and time < '{_iso(end)}' group by time(1h),hostname")
    for name, text in (("double-groupby-1", dg1), ("lastpoint", LASTPOINT)):
        plan = plan_select(parse_query(text).statements[0], Schema(kinds), now)
        rows = asyncio.run(src.load("db", "cpu", sel.read_range(plan, now), None))
        runner = sel.run_aggregate if plan.aggregate else sel.run_raw
        print(f"| {name} | {cpu_ms(lambda: runner(plan, rows, kinds, now), iterations):.1f} |")
    newest = table.filter(pc.equal(table.column("time"), pc.max(table.column("time"))))
    plan = plan_select(parse_query(LASTPOINT).statements[0], Schema(kinds), now)
    result = sel.run_raw(plan, newest, kinds, now)
    columns = [plan.time_name] + [c.name for c in plan.columns]
    series = _series_of("cpu", result, columns)
    body = query_json([StatementResult(series=series)])
    cached = MemorySource()
    cached.add_table("db", "cpu", newest)
    stages = {
        "run": lambda: sel.run_raw(plan, newest, kinds, now),
        "series": lambda: _series_of("cpu", result, columns),
        "v1 body": lambda: query_json([StatementResult(series=series)]),
        "JSON bytes": lambda: encode_json(body),
        "whole statement": lambda: encode_json(asyncio.run(execute_influxql(
            LASTPOINT, "db", cached, now_ns=now))),
    }
    for stage, run in stages.items():
        print(f"| lastpoint, {newest.num_rows} cached rows: {stage} | "
              f"{cpu_ms(run, iterations * 3):.2f} |")


if __name__ == "__main__":
    main()
