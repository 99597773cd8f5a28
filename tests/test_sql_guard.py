"""The SQL guardrails without services: DataFusion's statement options refuse everything that
is not a query, on the SQL planner and inside the InfluxQL translation."""
from __future__ import annotations

import asyncio
import time

import pyarrow as pa
import pytest

from query_api import sql_guard
from query_api.influxql.select import ExecutionError, _context, _sql
from query_api.pruning import plan_scan_limits

REFUSED = [
    "COPY (SELECT 1 AS x) TO '{path}' STORED AS CSV",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{path}' STORED AS CSV",
    "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{path}'",
    "CREATE TABLE made AS VALUES (1)",
    "CREATE VIEW v AS SELECT 1",
    "INSERT INTO m VALUES (1)",
    "DELETE FROM m",
    "DROP TABLE m",
    "SET datafusion.execution.batch_size = 1",
    "PREPARE p AS SELECT 1",
]


def table() -> pa.Table:
    return pa.table({"v": pa.array([1], pa.int64())})


@pytest.mark.parametrize("template", REFUSED)
def test_every_path_refuses_statements_that_are_not_queries(template, tmp_path):
    q = template.format(path=tmp_path / "out.csv")
    with pytest.raises(sql_guard.NotAQuery, match="only queries are allowed"):
        sql_guard.plan(_context(table(), "m"), q)
    with pytest.raises(sql_guard.NotAQuery):
        plan_scan_limits(_context(table(), "m"), q)  # the pruning planner over empty tables
    with pytest.raises(ExecutionError, match="only queries are allowed"):
        _sql(_context(table(), "m"), q)  # the InfluxQL translation's own SQL
    assert not (tmp_path / "out.csv").exists()
    assert _sql(_context(table(), "m"), "SELECT v FROM m").column("v").to_pylist() == [1]


def test_memory_limit_and_time_limit():
    sql_guard.configure(sql_guard.QueryLimits(timeout_s=0.5, memory_bytes=4 * 1024 * 1024))
    try:
        ctx = sql_guard.new_session()
        big = sql_guard.plan(ctx, "SELECT array_agg(value) FROM range(0, 5000000)")
        with pytest.raises(sql_guard.QueryMemoryExceeded, match="memory limit of 4194304 bytes"):
            asyncio.run(sql_guard.collect(big, time.monotonic() + 60))
        slow = sql_guard.plan(ctx, "SELECT sum(value * 2) FROM range(0, 100000000000)")
        with pytest.raises(sql_guard.QueryTimeout, match="time limit of 0.5 s"):
            asyncio.run(sql_guard.collect(slow, time.monotonic() + 0.5))
    finally:
        sql_guard.configure(sql_guard.QueryLimits())
