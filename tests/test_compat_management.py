"""InfluxQL management statements (CREATE/DROP DATABASE, DROP MEASUREMENT, SHOW RETENTION
POLICIES) against a real query API, answers compared with a real InfluxDB 1.x; the v1
``influxdb`` client's database calls; ``influent database|table`` and ``/ready``."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from influxdb import InfluxDBClient

from influent.devstack import free_port
from influent.config import Settings
from tests.harness import ROOT, cli_env, start_api, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(kafka_bootstrap, redis_url, tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("mgmt"), kafka_bootstrap=kafka_bootstrap,
                        redis_url=redis_url, topic_prefix=unique("m") + ".", partitions=1,
                        http_bind=f"127.0.0.1:{free_port()}")
    proc = start_api(settings)
    try:
        yield settings
    finally:
        proc.stop()


def v1(base: str, q: str, db: str | None = None, method: str = "POST") -> tuple[int, dict]:
    params = {"q": q, **({"db": db} if db else {})}
    resp = httpx.request(method, f"{base}/query", params=params, timeout=30)
    return resp.status_code, resp.json()


def test_statements_answer_as_influxdb1(api, influxdb1):
    """The same statement sequence on both servers gives the same status and JSON."""
    a, b, c = unique("a"), unique("b"), unique("c")
    script = [
        (f'CREATE DATABASE "{a}"', None),
        (f"CREATE DATABASE {a}", None),
        (f"CREATE DATABASE {b} WITH DURATION 1d", None),
        (f"CREATE DATABASE {b} WITH DURATION 2d", None),          # conflicts
        (f"CREATE DATABASE {b} WITH DURATION 1d", None),          # same: fine
        (f"CREATE DATABASE {c} WITH DURATION 30m", None),         # below 1h
        (f"CREATE DATABASE {c} WITH DURATION 200d REPLICATION 1", None),
        (f"SHOW RETENTION POLICIES ON {a}", None),
        (f"SHOW RETENTION POLICIES ON {b}", None),
        ("SHOW RETENTION POLICIES", c),
        ("SHOW RETENTION POLICIES ON nope_x", None),
        ("SHOW RETENTION POLICIES", None),
        ("DROP MEASUREMENT nothing_here", a),
        (f"DROP DATABASE {a}; SHOW RETENTION POLICIES ON {a}", None),
        ("DROP DATABASE nope_x", None),
        ("CREATE DATABASE", None),
        ("DROP MEASUREMENT", None),
        ("DROP MEASUREMENT cpu FROM x", a),
        (f"CREATE DATABASE {c} WITH", None),
        (f"DROP DATABASE {b}; DROP DATABASE {c}", None),
    ]
    for q, db in script:
        assert v1(api.http_url, q, db) == v1(influxdb1.service.endpoint, q, db), q


def test_drop_measurement_removes_the_table(api):
    db = unique("dm")
    for table in ("cpu", "mem"):
        resp = httpx.post(f"{api.http_url}/api/v3/configure/table", timeout=10,
                          json={"db": db, "table": table, "tags": ["host"],
                                "fields": [{"name": "v", "type": "float64"}]})
        assert resp.status_code == 200, resp.text
    assert v1(api.http_url, 'DROP MEASUREMENT "cpu"', db) == (200, {"results": [{"statement_id": 0}]})
    tables = httpx.get(f"{api.http_url}/api/v3/configure/table", params={"db": db}).json()
    assert [t["table_name"] for t in tables] == ["mem"]
    assert tables[0] == {"table_name": "mem", "tags": ["host"],
                         "fields": [{"name": "v", "type": "float64"}]}


def test_v3_influxql_endpoint_runs_management_statements(api):
    db = unique("v3")
    url = f"{api.http_url}/api/v3/query_influxql"
    resp = httpx.post(url, json={"q": f"CREATE DATABASE {db} WITH DURATION 7d", "format": "json"})
    assert resp.status_code == 200 and resp.json() == [], resp.text
    resp = httpx.get(url, params={"q": "SHOW RETENTION POLICIES", "db": db, "format": "json"})
    assert resp.json() == [{"name": "autogen", "duration": "168h0m0s",
                            "shardGroupDuration": "24h0m0s", "replicaN": 1, "default": True}]
    resp = httpx.post(url, json={"q": f"DROP DATABASE {db}"})
    assert resp.status_code == 200, resp.text
    assert db not in httpx.get(f"{api.http_url}/api/v3/configure/database").text


def test_v1_client_database_calls(api, influxdb1):
    db = unique("cl")
    for port in (int(api.http_url.rsplit(":", 1)[1]), influxdb1.http_port):
        client = InfluxDBClient(host="127.0.0.1", port=port)
        client.create_database(db)
        assert {"name": db} in client.get_list_database()
        assert client.get_list_retention_policies(db) == [
            {"name": "autogen", "duration": "0s", "shardGroupDuration": "168h0m0s",
             "replicaN": 1, "default": True}]
        client.drop_database(db)
        assert {"name": db} not in client.get_list_database()


def cli(settings: Settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "influent.cli", *args], cwd=ROOT,
                          env=cli_env(settings), capture_output=True, text=True, timeout=60,
                          input=input)


def test_cli_databases_and_tables(api):
    db = unique("cli")
    assert cli(api, "database", "create", db).returncode == 0
    done = cli(api, "database", "create", db)
    assert done.returncode == 1 and "409" in done.stderr
    rp = unique("clr")
    assert cli(api, "database", "create", rp, "--retention-period", "3d").returncode == 0
    listed = cli(api, "database", "list", "--json")
    assert {db, rp} <= set(json.loads(listed.stdout))
    _, body = v1(api.http_url, "SHOW RETENTION POLICIES", rp)
    assert body["results"][0]["series"][0]["values"][0][:3] == ["autogen", "72h0m0s", "24h0m0s"]

    made = cli(api, "table", "create", "cpu", "--db", db, "--tag", "host", "--field", "usage:float64",
               "--field", "n:int64")
    assert made.returncode == 0, made.stderr
    bad = cli(api, "table", "create", "x", "--db", db, "--field", "usage:double")
    assert bad.returncode == 2 and "NAME:TYPE" in bad.stderr
    listed = cli(api, "table", "list", "--db", db, "--json")
    assert json.loads(listed.stdout) == [{"table_name": "cpu", "tags": ["host"], "fields": [
        {"name": "n", "type": "int64"}, {"name": "usage", "type": "float64"}]}]
    assert "cpu" in cli(api, "table", "list", "--db", db).stdout
    assert cli(api, "table", "delete", "cpu", "--db", db, "--yes").returncode == 0
    assert json.loads(cli(api, "table", "list", "--db", db, "--json").stdout) == []
    gone = cli(api, "table", "delete", "cpu", "--db", db, "--yes")
    assert gone.returncode == 1 and "404" in gone.stderr
    assert cli(api, "database", "delete", db, input="n\n").returncode == 1  # not confirmed
    assert cli(api, "database", "delete", db, "--yes").returncode == 0
    assert db not in json.loads(cli(api, "database", "list", "--json").stdout)


def test_ready(api):
    resp = httpx.get(f"{api.http_url}/ready", timeout=10)
    assert (resp.status_code, resp.text) == (200, "OK")
