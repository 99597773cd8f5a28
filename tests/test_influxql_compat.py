"""InfluxQL compatibility: influent's ``/query`` answers equal a real InfluxDB 1.x's.

A session fixture starts ``influxd`` (Debian package ``influxdb``, installed with apt-get when
missing -- an install or start failure fails these tests, it never skips them) on loopback
ports with its state in a temp dir, and writes ``tests/influxql_compat/data.lp`` (database
``compat``) and ``other.lp`` (``other``) over HTTP ``/write``. influent reads the same bytes,
parsed by the project's line protocol parser, from an in-memory source. Every query of
``tests/influxql_compat/queries.py`` runs on both; bodies must match byte for byte (see the
flags there for the two justified relaxations).
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from query_api.influxql import MemorySource, encode_json, execute_influxql
from tests.influxql_compat.compare import assert_matches
from tests.influxql_compat.loader import MemoryWrites, fixture_source
from tests.influxql_compat.queries import QUERIES, Q
from tests.influxql_compat.server import InfluxDB1


@pytest.fixture(scope="session")
def influent_source() -> MemorySource:
    return fixture_source()


@pytest.mark.parametrize("case", QUERIES, ids=[f"{i:03d}" for i in range(len(QUERIES))])
def test_query_matches_influxdb1(case: Q, influxdb1: InfluxDB1, influent_source: MemorySource):
    params = {"q": case.query, "db": "compat"}
    if case.epoch:
        params["epoch"] = case.epoch
    if case.params is not None:
        params["params"] = json.dumps(case.params)
    _, expected_bytes = influxdb1.request("GET", "/query", params)
    ours = asyncio.run(execute_influxql(case.query, "compat", influent_source,
                                        now_ns=time.time_ns(), epoch=case.epoch,
                                        params=case.params))
    assert_matches(case, expected_bytes, encode_json(ours))


INTO_CASES = [
    ("SELECT mean(usage_user) AS m, max(procs) INTO intodb..m5 FROM cpu WHERE time >= "
     "'2009-11-10T20:00:00Z' AND time < '2009-11-10T22:00:00Z' GROUP BY time(30m), host", "m5"),
    ("SELECT usage_user, region INTO intodb..raw FROM cpu WHERE time < '2009-11-10T20:40:00Z' "
     "GROUP BY host", "raw"),
    ("SELECT * INTO intodb..:MEASUREMENT FROM weather, status GROUP BY *", "weather"),
    ("SELECT derivative(mean(usage_user)) INTO intodb.autogen.d FROM cpu WHERE host = 'a' AND "
     "time >= '2009-11-10T20:00:00Z' AND time < '2009-11-10T22:00:00Z' GROUP BY time(30m)", "d"),
    ("SELECT top(usage_user, host, 2), region INTO intodb..t FROM cpu", "t"),
    ("SELECT mean(usage_user) INTO intodb..nothing FROM cpu WHERE time > '2010-01-01T00:00:00Z' "
     "GROUP BY time(1h)", "nothing"),
]


@pytest.mark.parametrize("query,target", INTO_CASES, ids=[t for _, t in INTO_CASES])
def test_select_into_matches_influxdb1(query: str, target: str, influxdb1: InfluxDB1):
    """The INTO answer and what a read of the target returns afterwards (a database of its
    own on both sides, dropped afterwards: the other tests list databases)."""
    source = fixture_source()
    source.add_database("intodb")
    status, _ = influxdb1.request("POST", "/query", {"q": 'CREATE DATABASE "intodb"'})
    assert status == 200
    try:
        _, expected = influxdb1.request("POST", "/query", {"q": query, "db": "compat"})
        ours = asyncio.run(execute_influxql(query, "compat", source, now_ns=time.time_ns(),
                                            writes=MemoryWrites(source)))
        assert encode_json(ours).decode() == expected.decode()
        read = f"SELECT * FROM intodb..{target} GROUP BY *"
        _, expected = influxdb1.request("GET", "/query", {"q": read, "db": "compat"})
        ours = asyncio.run(execute_influxql(read, "compat", source, now_ns=time.time_ns()))
        assert encode_json(ours).decode() == expected.decode()
    finally:
        influxdb1.request("POST", "/query", {"q": 'DROP DATABASE "intodb"'})


@pytest.mark.parametrize("query", [
    "SELECT temp, note FROM weather WHERE city = 'oslo'; SHOW DATABASES; SELECT x FROM cpu",
    "SELECT mean(usage_user) FROM cpu WHERE time >= '2009-11-10T20:00:00Z' AND "
    "time < '2009-11-10T22:00:00Z' GROUP BY time(1h), region",
])
def test_pretty_matches_influxdb1(query: str, influxdb1: InfluxDB1,
                                  influent_source: MemorySource):
    _, expected = influxdb1.request("GET", "/query", {"q": query, "db": "compat",
                                                      "pretty": "true"})
    ours = asyncio.run(execute_influxql(query, "compat", influent_source, now_ns=time.time_ns()))
    assert encode_json(ours, pretty=True).decode() == expected.decode()


def test_suite_covers_the_required_features():
    """Guard against the query list losing coverage when edited."""
    text = "\n".join(q.query for q in QUERIES).lower()
    for needle in ("count(", "sum(", "mean(", "median(", "min(", "max(", "first(", "last(",
                   "spread(", "stddev(", "percentile(", "distinct(", "count(distinct(",
                   "=~", "!~", "!=", "now()", "group by time(", "fill(null", "fill(none)",
                   "fill(previous)", "fill(linear)", "fill(-1)", "order by time desc", "limit",
                   "offset", "slimit", "soffset", "..", '"compat"."autogen"', "/cpu.*/",
                   "show databases", "show measurements", "show tag keys", "show tag values",
                   "with key in", "show field keys", "show series", "tz(", "group by *",
                   " as ", "select *", "; ", "$"):
        assert needle in text, needle
    # the function registry: every transformation, selector and math function is compared
    for needle in ("derivative(", "non_negative_derivative(", "difference(",
                   "non_negative_difference(", "moving_average(", "cumulative_sum(",
                   "elapsed(", "integral(", "top(", "bottom(", "mode(", "sample(", "abs(",
                   "round(", "ceil(", "floor(", "sqrt(", "pow(", "ln(", "log(", "log2(",
                   "log10(", "sin(", "cos(", "tan(", "asin(", "acos(", "atan(", "atan2(",
                   "exp(", "from (select", "from (select max(m)"):
        assert needle in text, needle
    transformed = [q for q in QUERIES if any(f in q.query.lower() for f in (
        "derivative(", "difference(", "moving_average(", "cumulative_sum(", "elapsed(",
        "integral(", "top(", "bottom(", "mode(", "sample(", "abs(", "sqrt(", "sin("))]
    assert len(transformed) >= 80
    assert len(QUERIES) >= 40
    assert any(q.epoch for q in QUERIES) and any(not q.epoch for q in QUERIES)
