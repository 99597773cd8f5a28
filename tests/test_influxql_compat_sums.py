"""InfluxQL ``sum``/``mean`` to the last bit, against a real InfluxDB 1.x.

The main compatibility data has values whose sums are exact in any order; here every value is
chosen so that the order of the additions changes the result (magnitudes from 1e-3 to 1e16,
both signs, integers beyond 2**53 in sum). Database ``sums`` is written to the session's
``influxd`` (tests/conftest.py) and, parsed by the project's line protocol parser, to an
in-memory source; every answer must be the same bytes.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from query_api.influxql import MemorySource, encode_json, execute_influxql
from tests.influxql_compat.loader import load_lp
from tests.influxql_compat.server import InfluxDB1, wait_until

DB = "sums"
START = 1257883200_000_000_000  # 2009-11-10T20:00:00Z
STEP = 300_000_000_000          # 5 minutes
POINTS = 36                     # 3 hours per series
HOSTS = {"a": "r1", "b": "r1", "c": "r2", "d": "r2"}


def _lines() -> bytes:
    rng = random.Random(20091110)
    scales = [1e-3, 0.1, 1.0, 3.3, 1e3, 1e8, 1e15, 1e16]
    out = []
    for host, region in HOSTS.items():
        for i in range(POINTS):
            f = rng.choice([-1, 1]) * rng.random() * rng.choice(scales)
            n = rng.randrange(-3 * 10**16, 3 * 10**16)
            out.append(f"m,host={host},region={region} f={f!r},n={n}i {START + i * STEP}")
    return ("\n".join(out) + "\n").encode()


WHERE = "WHERE time >= '2009-11-10T20:00:00Z' AND time < '2009-11-10T23:00:00Z'"
QUERIES = [
    f"SELECT mean(f), sum(f) FROM m {WHERE} GROUP BY time(1h), host",
    f"SELECT mean(f), sum(f) FROM m {WHERE} GROUP BY time(20m), *",
    f"SELECT mean(n), sum(n) FROM m {WHERE} GROUP BY time(1h), host",
    "SELECT mean(f), sum(f), mean(n), sum(n) FROM m GROUP BY host",
    f"SELECT mean(f), sum(f) FROM m {WHERE} AND host = 'b' GROUP BY time(30m) fill(0)",
]
# several series in one group: 1.x reduces each series then combines the partial results
MULTI_SERIES = [
    f"SELECT mean(f), sum(f) FROM m {WHERE} GROUP BY time(1h), region",
    f"SELECT mean(f), sum(f) FROM m {WHERE} GROUP BY time(1h)",
    "SELECT mean(f), sum(f), mean(n), sum(n) FROM m",
]


@pytest.fixture(scope="module")
def sums_db(influxdb1: InfluxDB1) -> Iterator[MemorySource]:
    """The data in the shared InfluxDB 1.x and in memory; the 1.x database is dropped after the
    module, as other modules compare SHOW DATABASES with that server."""
    data = _lines()
    status, body = influxdb1.request("POST", "/query", {"q": f'CREATE DATABASE "{DB}"'})
    assert status == 200, body
    influxdb1.write(DB, data)
    total = len(HOSTS) * POINTS
    assert wait_until(lambda: influxdb1.query("SELECT count(f) FROM m", DB)["results"][0].get(
        "series", [{}])[0].get("values", [[None, 0]])[0][1] == total)
    source = MemorySource()
    load_lp(source, DB, data)
    yield source
    influxdb1.request("POST", "/query", {"q": f'DROP DATABASE "{DB}"'})


def _both(query: str, influxdb1: InfluxDB1, source: MemorySource) -> tuple[str, str]:
    _, expected = influxdb1.request("GET", "/query", {"q": query, "db": DB})
    ours = asyncio.run(execute_influxql(query, DB, source, now_ns=time.time_ns()))
    return expected.decode(), encode_json(ours).decode()


@pytest.mark.parametrize("query", QUERIES, ids=[f"{i:02d}" for i in range(len(QUERIES))])
def test_sum_and_mean_match_influxdb1(query: str, influxdb1: InfluxDB1, sums_db: MemorySource):
    expected, ours = _both(query, influxdb1, sums_db)
    assert ours == expected, query


@pytest.mark.parametrize("query", MULTI_SERIES, ids=[f"{i:02d}" for i in range(len(MULTI_SERIES))])
def test_multi_series_sum_and_mean_match_influxdb1(query: str, influxdb1: InfluxDB1,
                                                   sums_db: MemorySource):
    expected, ours = _both(query, influxdb1, sums_db)
    assert ours == expected, query
