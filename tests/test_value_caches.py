"""Last Value Cache and Distinct Value Cache: the pure cache structures, then a real stack
(Kafka, Redis, worker, API): InfluxDB 3's configure endpoints and status codes, the SQL table
functions and system tables, filling from the write stream, rebuilding on restart, and
InfluxQL lastpoint / SHOW TAG VALUES answered from a cache with the same answer as without."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pyarrow as pa
import pytest

from influent.config import Settings
from influent.model import ORDER_SEQ, ORDER_TS
from persist.catalog import TableSchema
from persist.value_caches import (CacheRequestError, DistinctCacheDef, LastCacheDef,
                                  distinct_cache_from_request, last_cache_from_request)
from query_api.value_caches import DistinctValueCache, LastValueCache
from tests.harness import ROOT, cli_env, running, start_api, wait_for

T0 = 1_700_000_000_000_000_000
SCHEMA = TableSchema({"host": "tag", "region": "tag", "usage": "float", "idle": "integer",
                      "time": "time"})


def batch(rows: list[dict], order_ts: int = 1) -> pa.Table:
    table = pa.Table.from_pylist(rows).cast(pa.schema(
        [pa.field(k, {"host": pa.string(), "region": pa.string(), "usage": pa.float64(),
                      "idle": pa.int64(), "time": pa.timestamp("ns")}[k]) for k in rows[0]]))
    return (table.append_column(ORDER_TS, pa.array([order_ts] * len(rows), pa.int64()))
                 .append_column(ORDER_SEQ, pa.array(range(len(rows)), pa.int64())))


def test_last_cache_keeps_the_newest_rows_per_key_merged_as_stored():
    us = 1000
    cache = LastValueCache(LastCacheDef("db", "cpu", "c", ("host",), None, 2, 3600), ["host"])
    cache.add(batch([{"host": "a", "usage": 1.0, "idle": 1, "time": T0},
                     {"host": "a", "usage": 2.0, "idle": 2, "time": T0 + 2 * us},
                     {"host": "a", "usage": 3.0, "idle": 3, "time": T0 + us},
                     {"host": "b", "usage": 9.0, "idle": 9, "time": T0}]))
    cache.add(batch([{"host": "a", "usage": 5.0, "time": T0 + 2 * us}], order_ts=2))  # merged
    rows = cache.rows()
    assert rows.column_names == ["host", "idle", "usage", "time"]
    assert [(r["host"], r["usage"], r["idle"]) for r in rows.to_pylist()] == [
        ("a", 5.0, 2), ("a", 3.0, 3), ("b", 9.0, 9)]
    assert rows.column("time").cast(pa.int64()).to_pylist() == [T0 + 2 * us, T0 + us, T0]
    newest = cache.newest_rows().to_pylist()
    assert [(r["host"], r["usage"]) for r in newest] == [("a", 5.0), ("b", 9.0)]
    assert cache.state.complete
    cache.merge(now_ns=2**62)  # far past the ttl: everything expires, the cache is incomplete
    assert cache.rows().num_rows == 0 and not cache.state.complete


def test_distinct_cache_keeps_combinations_within_cardinality():
    now = time.time_ns()
    cache = DistinctValueCache(DistinctCacheDef("db", "cpu", "d", ("region", "host"), 3, 3600))
    cache.add(batch([{"host": "a", "region": "eu", "time": T0},
                     {"host": "b", "region": "eu", "time": T0},
                     {"host": "a", "region": "eu", "time": T0 + 1}]), seen_ns=now)
    assert cache.rows(now_ns=now).to_pylist() == [{"region": "eu", "host": "a"}, {"region": "eu", "host": "b"}]
    assert cache.state.complete
    cache.add(batch([{"host": "c", "region": "us", "time": T0},
                     {"host": "d", "region": "us", "time": T0}]), seen_ns=now + 1)
    cache.merge(now_ns=now + 2)
    assert cache.rows(now_ns=now + 2).num_rows == 3 and not cache.state.complete  # over 3
    cache.merge(now_ns=now + 3600 * 10**9 + 1)  # older than max_age: dropped
    assert cache.rows(now_ns=now + 3600 * 10**9 + 1).to_pylist() == [
        {"region": "us", "host": "c"}, {"region": "us", "host": "d"}]


def test_create_requests_are_checked_as_influxdb3_does():
    d = last_cache_from_request({"db": "db", "table": "cpu"}, SCHEMA)
    assert (d.name, d.key_columns, d.value_columns, d.count, d.ttl) == (
        "cpu_host_region_last_cache", ("host", "region"), None, 1, 14400)
    for body, status in (({"table": "cpu"}, 400), ({"db": "db"}, 400),
                         ({"db": "db", "table": "cpu", "key_columns": ["nope"]}, 400),
                         ({"db": "db", "table": "cpu", "key_columns": ["usage"]}, 400),
                         ({"db": "db", "table": "cpu", "value_columns": ["nope"]}, 400),
                         ({"db": "db", "table": "cpu", "count": 0}, 400)):
        with pytest.raises(CacheRequestError) as err:
            last_cache_from_request(body, SCHEMA)
        assert err.value.status == status, body
    d = distinct_cache_from_request({"db": "db", "table": "cpu", "columns": ["region", "host"]},
                                    SCHEMA)
    assert (d.name, d.max_cardinality, d.max_age) == ("cpu_region_host_distinct_cache", 100000, 86400)
    for body in ({"db": "db", "table": "cpu"}, {"db": "db", "table": "cpu", "columns": ["usage"]},
                 {"db": "db", "table": "cpu", "columns": ["nope"]}):
        with pytest.raises(CacheRequestError):
            distinct_cache_from_request(body, SCHEMA)


# ---- a real stack ------------------------------------------------------------------------------
LINES = [f"cpu,host=h{h},region=r{h % 3} usage={h + i / 10},idle={i}i {T0 + i * 10**9}"
         for h in range(6) for i in range(20)]
LASTPOINT = 'SELECT last(*) FROM "cpu" GROUP BY *'
TSBS_LASTPOINT = 'SELECT * FROM "cpu" GROUP BY "host" ORDER BY time DESC LIMIT 1'
TAG_VALUES = 'SHOW TAG VALUES FROM "cpu" WITH KEY = "host"'
LVC = "last_cache('cpu', 'cpu_host_region_last_cache')"


def write(settings: Settings, db: str, lines: list[str]) -> None:
    resp = httpx.post(f"{settings.http_url}/api/v3/write_lp", params={"db": db},
                      content="\n".join(lines), timeout=60)
    assert resp.status_code == 204, resp.text


def sql(settings: Settings, db: str, q: str) -> httpx.Response:
    return httpx.get(f"{settings.http_url}/api/v3/query_sql",
                     params={"db": db, "q": q, "format": "json"}, timeout=60)


def influxql(settings: Settings, db: str, q: str) -> dict:
    resp = httpx.get(f"{settings.http_url}/query", params={"db": db, "q": q}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def rows_scanned(settings: Settings) -> float:
    text = httpx.get(f"{settings.http_url}/metrics", timeout=30).text
    found = re.search(r"^influent_query_rows_scanned_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def scanned_by(settings: Settings, db: str, q: str) -> tuple[dict, float]:
    before = rows_scanned(settings)
    answer = influxql(settings, db, q)
    return answer, rows_scanned(settings) - before


def configure(settings: Settings, method: str, kind: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{settings.http_url}/api/v3/configure/{kind}_cache",
                         timeout=60, **kw)


@pytest.mark.integration
def test_caches_end_to_end(settings: Settings):
    s = settings.replace(persist_max_rows=40, tick_interval=1.0)
    db = s.default_db
    with running(s) as run:
        write(s, db, LINES)
        wait_for(lambda: sql(s, db, "SELECT count(*) AS n FROM cpu").json() == [{"n": 120}],
                 timeout=90, what="rows ingested")
        lastpoint, scanned = scanned_by(s, db, LASTPOINT)
        assert scanned > 0 and len(lastpoint["results"][0]["series"]) == 6
        tag_values, scanned = scanned_by(s, db, TAG_VALUES)
        assert scanned > 0
        tsbs_lastpoint, scanned = scanned_by(s, db, TSBS_LASTPOINT)
        assert scanned > 0 and len(tsbs_lastpoint["results"][0]["series"]) == 6

        _configure_status_codes(s, db)

        # InfluxQL answered from the seeded caches: the same answer, without reading the table
        assert scanned_by(s, db, LASTPOINT) == (lastpoint, 0)
        assert scanned_by(s, db, TSBS_LASTPOINT) == (tsbs_lastpoint, 0)
        assert scanned_by(s, db, TAG_VALUES) == (tag_values, 0)
        two_each = TSBS_LASTPOINT.replace("LIMIT 1", "LIMIT 2")  # the cache keeps 1 row per key
        assert scanned_by(s, db, two_each)[1] > 0

        # the table functions: seeded from the stored rows, then fed by new writes
        got = sql(s, db, f"SELECT host, usage, idle FROM {LVC} ORDER BY host").json()
        assert got == sql(s, db, "SELECT host, usage, idle FROM cpu WHERE time = "
                                 f"to_timestamp_nanos({T0 + 19 * 10**9}) ORDER BY host").json()
        by_region = sql(s, db, "SELECT * FROM last_cache('cpu', 'by_region')").json()
        assert [r["region"] for r in by_region] == ["r0", "r0", "r1", "r1", "r2", "r2"]
        assert set(by_region[0]) == {"region", "usage", "time"}
        combos = sql(s, db, "SELECT * FROM distinct_cache('cpu', 'rh')").json()
        assert combos == [{"region": f"r{h % 3}", "host": f"h{h}"}
                          for h in sorted(range(6), key=lambda h: (h % 3, h))]
        write(s, db, ["cpu,host=h9,region=r9 usage=99,idle=9i " + str(T0 + 10**12)])
        wait_for(lambda: sql(s, db, f"SELECT usage FROM {LVC} WHERE host = 'h9'"
                             ).json() == [{"usage": 99.0}], timeout=60, what="the new write cached")
        wait_for(lambda: {"region": "r9", "host": "h9"} in sql(
            s, db, "SELECT * FROM distinct_cache('cpu', 'rh')").json(), timeout=60,
            what="the new combination cached")
        assert sql(s, db, "SELECT * FROM last_cache('cpu', 'nope')").status_code == 400
        assert sql(s, db, "SELECT * FROM distinct_cache('cpu')").status_code == 200  # only one
        lastpoint, scanned = scanned_by(s, db, LASTPOINT)
        assert scanned == 0 and len(lastpoint["results"][0]["series"]) == 7
        tag_values, scanned = scanned_by(s, db, TAG_VALUES)
        assert scanned == 0 and len(tag_values["results"][0]["series"][0]["values"]) == 7

        # system tables
        names = sql(s, db, "SELECT name, count, ttl FROM system.last_caches ORDER BY name").json()
        assert names == [{"name": "by_region", "count": 2, "ttl": 14400},
                         {"name": "cpu_host_region_last_cache", "count": 1, "ttl": 14400}]
        assert sql(s, db, "SELECT name, column_names FROM system.distinct_caches").json() == [
            {"name": "rh", "column_names": ["region", "host"]}]

        # a restarted API rebuilds the caches from the catalog's definitions and stored rows
        run.api.stop()
        run.api = start_api(s)
        assert sql(s, db, f"SELECT usage FROM {LVC} WHERE host = 'h9'").json() == [
            {"usage": 99.0}]
        assert scanned_by(s, db, LASTPOINT) == (lastpoint, 0)
        tsbs_lastpoint, scanned = scanned_by(s, db, TSBS_LASTPOINT)
        assert scanned == 0 and len(tsbs_lastpoint["results"][0]["series"]) == 7

        # the CLI
        cli = [sys.executable, "-m", "influent.cli"]
        out = subprocess.run(cli + ["cache", "list", "--db", db], env=cli_env(s), cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "by_region" in out.stdout and "rh" in out.stdout, out
        out = subprocess.run(cli + ["cache", "delete", "last", "by_region", "--db", db,
                                    "--table", "cpu"], env=cli_env(s), cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out

        # delete: 400 without the names, 200, then 404; without its caches the same answers
        # come from the table
        assert configure(s, "DELETE", "distinct", params={"db": db}).status_code == 400
        assert configure(s, "DELETE", "distinct",
                         params={"db": db, "table": "cpu", "name": "rh"}).status_code == 200
        assert configure(s, "DELETE", "distinct",
                         params={"db": db, "table": "cpu", "name": "rh"}).status_code == 404
        assert configure(s, "DELETE", "last", json={"db": db, "table": "cpu",
                                                    "name": "cpu_host_region_last_cache"}
                         ).status_code == 200
        assert sql(s, db, "SELECT * FROM distinct_cache('cpu', 'rh')").status_code == 400
        assert sql(s, db, "SELECT name FROM system.last_caches").json() == []
        answer, scanned = scanned_by(s, db, LASTPOINT)
        assert answer == lastpoint and scanned > 0
        answer, scanned = scanned_by(s, db, TAG_VALUES)
        assert answer == tag_values and scanned > 0
        answer, scanned = scanned_by(s, db, TSBS_LASTPOINT)
        assert answer == tsbs_lastpoint and scanned > 0


def _configure_status_codes(s: Settings, db: str) -> None:
    """Create the test's caches, checking InfluxDB 3's answers on the way."""
    assert configure(s, "POST", "last", json={"table": "cpu"}).status_code == 400
    for bad in (b"{not json", b'["a"]', b""):  # bad bodies are refused, never crash the API
        assert configure(s, "POST", "last", content=bad).status_code == 400
        assert configure(s, "DELETE", "distinct", content=bad).status_code == 400
    assert configure(s, "POST", "last", json={"db": db, "table": "cpu", "count": "3"}
                     ).status_code == 400
    assert configure(s, "POST", "distinct", json={"db": db, "table": "cpu", "columns": "host"}
                     ).status_code == 400
    assert configure(s, "POST", "last", json={"db": "nope", "table": "cpu"}).status_code == 404
    assert configure(s, "POST", "last", json={"db": db, "table": "nope"}).status_code == 404
    assert configure(s, "POST", "last", json={"db": db, "table": "cpu",
                                              "key_columns": ["usage"]}).status_code == 400
    created = configure(s, "POST", "last", json={"db": db, "table": "cpu"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "cpu_host_region_last_cache"
    assert configure(s, "POST", "last", json={"db": db, "table": "cpu"}).status_code == 409
    assert configure(s, "POST", "last", json={"db": db, "table": "cpu", "name": "by_region",
                                              "key_columns": ["region"], "count": 2,
                                              "value_columns": ["usage"]}).status_code == 201
    assert configure(s, "POST", "distinct", json={"db": db, "table": "cpu",
                                                  "columns": ["idle"]}).status_code == 400
    assert configure(s, "POST", "distinct", json={"db": db, "table": "cpu", "name": "rh",
                                                  "columns": ["region", "host"]}).status_code == 201


@pytest.mark.integration
def test_cached_answers_match_influxdb1(settings: Settings, influxdb1):
    """The compatibility data in both servers; with a last cache and a distinct cache on every
    measurement, lastpoint and SHOW TAG VALUES answer byte for byte as InfluxDB 1.x does, and
    the caches answer those they cover (a series whose newest row lacks a field is not)."""
    from tests.influxql_compat.loader import HERE

    s = settings.replace(persist_max_rows=10, tick_interval=1.0)
    count_all = "SELECT count(*) FROM /.*/"
    with running(s):
        resp = httpx.post(f"{s.http_url}/write", params={"db": "compat"},
                          content=(HERE / "data.lp").read_bytes(), timeout=60)
        assert resp.status_code == 204, resp.text
        wait_for(lambda: influxql(s, "compat", count_all) == influxdb1.query(count_all, "compat"),
                 timeout=90, what="compat data ingested")
        measurements = [v[0] for v in influxql(s, "compat", "SHOW MEASUREMENTS")
                        ["results"][0]["series"][0]["values"]]
        for m in measurements:
            assert configure(s, "POST", "last", json={"db": "compat", "table": m}).status_code == 201
            tags = [r["tagKey"] for r in _tag_keys(s, m)]
            if tags:
                assert configure(s, "POST", "distinct", json={"db": "compat", "table": m,
                                                              "columns": tags}).status_code == 201
        served = []
        for m in measurements:
            assert sql(s, "compat", f"SELECT count(*) FROM last_cache('{m}')").status_code == 200
            for q in (f'SELECT last(*) FROM "{m}" GROUP BY *',
                      f'SELECT * FROM "{m}" GROUP BY * ORDER BY time DESC LIMIT 1',
                      f'SHOW TAG VALUES FROM "{m}" WITH KEY =~ /.*/'):
                _, expected = influxdb1.request("GET", "/query", {"q": q, "db": "compat"})
                before = rows_scanned(s)
                ours = httpx.get(f"{s.http_url}/query", params={"q": q, "db": "compat"},
                                 timeout=60).content
                assert ours.decode() == expected.decode(), q
                if rows_scanned(s) == before:
                    served.append(q)
        for kind in ("last(*)", "LIMIT 1", "SHOW"):
            assert any(kind in q for q in served), (kind, served)


def _tag_keys(s: Settings, m: str) -> list[dict]:
    body = influxql(s, "compat", f'SHOW TAG KEYS FROM "{m}"')
    series = body["results"][0].get("series") or [{"values": []}]
    return [{"tagKey": v[0]} for v in series[0]["values"]]


def test_last_cache_keeps_rows_of_one_time_in_series_key_order():
    """Keyed on a coarser column, rows of one time keep InfluxQL's order (series key), so a
    LIMIT over the cache keeps the rows it keeps over the table."""
    cache = LastValueCache(LastCacheDef("db", "cpu", "c", ("region",), None, 1, 3600),
                           ["host", "region"])
    cache.add(batch([{"host": "b", "region": "eu", "usage": 2.0, "time": T0},
                     {"host": "a", "region": "eu", "usage": 1.0, "time": T0},
                     {"host": "c", "region": "eu", "usage": 3.0, "time": T0 - 1000}]))
    assert [(r["host"], r["usage"]) for r in cache.rows().to_pylist()] == [("a", 1.0)]
