"""Plugin upload and dry runs (``/api/v3/plugin_test/wal|schedule``, ``influent test ...``)
against a real query API: the uploaded plugin's logs and writes come back, and nothing is
written to Kafka, logged or cached."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import ROOT, cli_env, read_topic, start_api, unique

pytestmark = pytest.mark.integration

PLUGIN = '''
def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        influxdb3_local.info("table", batch["table_name"], "rows", len(batch["rows"]))
        for row in batch["rows"]:
            line = LineBuilder(batch["table_name"] + "_x").tag("host", row["host"])
            influxdb3_local.write(line.float64_field("double", row["usage"] * 2).time_ns(row["time"]))
    influxdb3_local.write_to_db("other", LineBuilder("audit").int64_field("n", len(table_batches)))
    influxdb3_local.cache.put("seen", 1)
    influxdb3_local.warn("factor", (args or {}).get("factor"), "cached", influxdb3_local.cache.get("seen"))

def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.info("called", type(call_time).__name__)
    influxdb3_local.write_sync(LineBuilder("tick").int64_field("n", 1), no_sync=True)
'''


@pytest.fixture(scope="module")
def api(kafka_bootstrap, redis_url, tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("plugins"), kafka_bootstrap=kafka_bootstrap,
                        redis_url=redis_url, topic_prefix=unique("p") + ".", partitions=1,
                        http_bind=f"127.0.0.1:{free_port()}")
    proc = start_api(settings)
    try:
        resp = httpx.put(f"{settings.http_url}/api/v3/plugins/files",
                         json={"plugin_name": "double.py", "content": PLUGIN})
        assert resp.status_code == 200, resp.text
        yield settings
    finally:
        proc.stop()


def test_wal_dry_run_returns_writes_and_logs_and_writes_nothing(api):
    body = {"filename": "double.py", "database": "db1", "input_arguments": {"factor": "2"},
            "input_lp": "cpu,host=a usage=1.5 100\ncpu,host=b usage=2 200\nbad line here"}
    resp = httpx.post(f"{api.http_url}/api/v3/plugin_test/wal", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "log_lines": ["INFO: table cpu rows 2", "WARN: factor 2 cached 1"],
        "database_writes": {"db1": ["cpu_x,host=a double=3.0 100", "cpu_x,host=b double=4.0 200"],
                            "other": ["audit n=1i"]},
        "errors": [resp.json()["errors"][0]]}
    assert resp.json()["errors"][0].startswith("line 3: ")
    assert asyncio.run(read_topic(api, api.writes_topic, timeout=5)) == []
    client = redis.Redis.from_url(api.redis_url)
    assert not [k for k in client.scan_iter(f"{api.app_id}:*") if b"plugin_logs" in k or b"cache" in k]
    assert httpx.get(f"{api.http_url}/api/v3/configure/database").json() == []


def test_schedule_dry_run(api):
    resp = httpx.post(f"{api.http_url}/api/v3/plugin_test/schedule", timeout=60,
                      json={"filename": "double.py", "database": "db1", "schedule": "every:1h"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["log_lines"] == ["INFO: called datetime"]
    assert out["database_writes"] == {"db1": ["tick n=1i"]} and out["errors"] == []
    assert out["trigger_time"].endswith(":00:00Z")  # the next whole hour
    assert asyncio.run(read_topic(api, api.writes_topic, timeout=5)) == []


def test_errors_are_reported(api):
    url = f"{api.http_url}/api/v3/plugin_test/wal"
    missing = httpx.post(url, json={"filename": "nope.py", "database": "db1", "input_lp": "m v=1"})
    assert missing.status_code == 404 and "nope.py" in missing.text
    assert httpx.put(f"{api.http_url}/api/v3/plugins/files",
                     json={"plugin_name": "broken.py", "content": "def f(:\n"}).status_code == 400
    assert httpx.put(f"{api.http_url}/api/v3/plugins/files",
                     json={"plugin_name": "../x.py", "content": ""}).status_code == 400
    raising = "def process_writes(influxdb3_local, table_batches, args=None):\n" \
              "    influxdb3_local.info('before')\n    raise RuntimeError('boom')\n"
    assert httpx.put(f"{api.http_url}/api/v3/plugins/files",
                     json={"plugin_name": "raises.py", "content": raising}).status_code == 200
    out = httpx.post(url, json={"filename": "raises.py", "database": "db1",
                                "input_lp": "m v=1"}).json()
    assert out == {"log_lines": ["INFO: before"], "database_writes": {},
                   "errors": ["RuntimeError: boom"]}
    assert "raises.py" in httpx.get(f"{api.http_url}/api/v3/plugins/files").json()


def test_cli(api, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "influent.cli", *args], cwd=ROOT,
                              env=cli_env(api), capture_output=True, text=True, timeout=60)

    source = tmp_path / "tagger.py"
    source.write_text("def process_writes(influxdb3_local, table_batches, args=None):\n"
                      "    influxdb3_local.write(LineBuilder('seen').int64_field('n', 1).time_ns(5))\n")
    assert cli("plugin", "upload", str(source)).returncode == 0
    done = cli("test", "wal_plugin", "tagger.py", "--database", "db1", "--lp", "m v=1 1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["database_writes"] == {"db1": ["seen n=1i 5"]}
    failed = cli("test", "wal_plugin", "tagger.py", "--database", "db1", "--lp", "m v=")
    assert failed.returncode == 1 and "1 error(s)" in failed.stderr
    scheduled = cli("test", "schedule_plugin", "tagger.py", "--database", "db1")
    assert scheduled.returncode == 1 and "process_scheduled_call" in scheduled.stdout


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    """A worker and the API with an empty plugin directory: plugins come only by upload."""
    from tests.engine_harness import engine_stack

    yield from engine_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("uploaded"), "upl")


def test_a_trigger_runs_an_uploaded_plugin_on_the_worker(stack):
    from tests.engine_harness import call, new_db, rows, write
    from tests.harness import wait_for

    source = (ROOT / "tests" / "plugins" / "derive_on_write.py").read_text()
    assert call(stack, "PUT", "/api/v3/plugins/files",
                json={"plugin_name": "team/derive.py", "content": source}).status_code == 200
    db = new_db(stack, "upl")
    body = {"db": db, "plugin_filename": "team/derive.py", "trigger_name": "derive",
            "trigger_specification": "table:cpu", "trigger_arguments": {"factor": "10"}}
    resp = call(stack, "POST", "/api/v3/configure/processing_engine_trigger", json=body)
    assert resp.status_code == 200, resp.text
    missing = dict(body, plugin_filename="team/nope.py", trigger_name="other")
    assert call(stack, "POST", "/api/v3/configure/processing_engine_trigger",
                json=missing).status_code == 400
    write(stack, db, "cpu,host=a usage=1 1700000000000000000")
    got = wait_for(lambda: rows(stack, db, "SELECT host, usage_scaled FROM cpu_derived"),
                   timeout=60, what="rows derived by the uploaded plugin")
    assert got == [{"host": "a", "usage_scaled": 10.0}]
