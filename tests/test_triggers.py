"""The processing engine end to end (real Kafka, Redis, worker and API processes) with plugins
written as InfluxDB 3 documents them (tests/plugins/): on-write, scheduled (every and cron),
request, on-persist, failing (log / disable / retry) and sleeping plugins; the loop guard; logs
through SQL; metrics; the CLI."""
from __future__ import annotations

import subprocess
import sys

import pytest

from influent.config import Settings
from tests.engine_harness import call, engine_stack, metric, new_db, rows, write
from tests.harness import ROOT, unique, wait_for

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    yield from engine_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("triggers"), "trg",
                            plugin_dir=str(ROOT / "tests" / "plugins"), persist_max_rows=100,
                            tick_interval=1.0)


def create_trigger(settings: Settings, db: str, name: str, plugin: str, spec: str,
                   args: dict | None = None, **trigger_settings) -> None:
    body = {"db": db, "plugin_filename": plugin, "trigger_name": name,
            "trigger_specification": spec, "trigger_arguments": args,
            "trigger_settings": {"run_async": False, "error_behavior": "log", **trigger_settings},
            "disabled": False}
    resp = call(settings, "POST", "/api/v3/configure/processing_engine_trigger", json=body)
    assert resp.status_code == 200, resp.text


def delete_trigger(settings: Settings, db: str, name: str) -> None:
    resp = call(settings, "DELETE", "/api/v3/configure/processing_engine_trigger",
                json={"db": db, "trigger_name": name, "force": True})
    assert resp.status_code == 200, resp.text


def logs(settings: Settings, db: str) -> list[dict]:
    return rows(settings, db, "SELECT trigger_name, log_level, log_text FROM "
                              "system.processing_engine_logs ORDER BY event_time")


def logged(settings: Settings, db: str, trigger: str, text: str, level: str | None = None) -> int:
    return sum(1 for r in logs(settings, db) if r["trigger_name"] == trigger and text in r["log_text"]
               and (level is None or r["log_level"] == level))


def test_on_write_plugin_writes_a_derived_measurement_and_not_on_its_own_writes(stack):
    settings = stack
    db = new_db(settings, "onwrite")
    create_trigger(settings, db, "derive", "derive_on_write.py", "all_tables", {"factor": "10"})
    write(settings, db, f"cpu,host=a usage=1 {T0}\ncpu,host=b usage=2.5 {T0 + 1}")
    got = wait_for(lambda: rows(settings, db, "SELECT host, usage_scaled, time FROM cpu_derived "
                                              "ORDER BY host") if logged(settings, db, "derive", "saw table cpu ") else [],
                   timeout=60, what="derived rows")
    got = wait_for(lambda: (r := rows(settings, db, "SELECT host, usage_scaled FROM cpu_derived ORDER BY host"))
                   and len(r) == 2 and r, what="both derived rows")
    assert got == [{"host": "a", "usage_scaled": 10.0}, {"host": "b", "usage_scaled": 25.0}]
    # the derived writes are older than this marker: once the marker is seen they were too
    write(settings, db, f"sentinel,host=z v=1 {T0 + 2}")
    wait_for(lambda: logged(settings, db, "derive", "saw table sentinel"), what="the sentinel")
    assert logged(settings, db, "derive", "saw table cpu_derived") == 0
    delete_trigger(settings, db, "derive")


def test_scheduled_plugins_downsample_with_query_and_write(stack):
    settings = stack
    db = new_db(settings, "sched")
    write(settings, db, f"cpu,host=a usage=10 {T0}\ncpu,host=a usage=20 {T0 + 1}\ncpu,host=b usage=30 {T0 + 2}")
    wait_for(lambda: len(rows(settings, db, "SELECT * FROM cpu")) == 3, what="source rows")
    create_trigger(settings, db, "every", "downsample.py", "every:1s", {"source": "cpu", "target": "cpu_every"})
    create_trigger(settings, db, "cron", "downsample.py", "cron:*/2 * * * * *",
                   {"source": "cpu", "target": "cpu_cron"})
    expected = [{"host": "a", "usage_avg": 15.0, "samples": 2}, {"host": "b", "usage_avg": 30.0, "samples": 1}]
    for target in ("cpu_every", "cpu_cron"):
        got = wait_for(lambda: rows(settings, db, f"SELECT DISTINCT host, usage_avg, samples FROM {target} "
                                                  "ORDER BY host"), timeout=60, what=target)
        assert got == expected
    assert logged(settings, db, "every", "downsampled 2 series", "INFO")
    delete_trigger(settings, db, "every")
    delete_trigger(settings, db, "cron")


def test_request_plugin_answers_json(stack):
    settings = stack
    db = new_db(settings, "req")
    path = unique("hello/")
    write(settings, db, f"cpu,host=a usage=1 {T0}\ncpu,host=b usage=2 {T0 + 1}")
    wait_for(lambda: len(rows(settings, db, "SELECT * FROM cpu")) == 2, what="rows")
    create_trigger(settings, db, "hello", "request_json.py", f"request:{path}", {"greeting": "hi"})
    resp = call(settings, "POST", f"/api/v3/engine/{path}", params={"name": "bob"},
                json={"x": [1, 2]}, headers={"Authorization": "Bearer nothing-to-see"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["hello"] == "bob" and body["rows"] == 2 and body["echo"] == {"x": [1, 2]}
    assert body["greeting"] == "hi" and body["saw_authorization"] is False
    failed = call(settings, "GET", f"/api/v3/engine/{path}", params={"fail": "1"})
    assert failed.status_code == 400 and failed.json() == {"error": "asked to fail"}
    missing = call(settings, "GET", "/api/v3/engine/no/such/path")
    assert missing.status_code == 404 and missing.text == '{error: "not found"}'
    taken = call(settings, "POST", "/api/v3/configure/processing_engine_trigger", json={
        "db": db, "plugin_filename": "request_json.py", "trigger_name": "again",
        "trigger_specification": f"request:{path}"})
    assert taken.status_code == 409
    assert call(settings, "POST", "/api/v3/configure/processing_engine_trigger/disable",
                json={"db": db, "trigger_name": "hello"}).status_code == 200
    assert call(settings, "GET", f"/api/v3/engine/{path}").status_code == 404
    assert logged(settings, db, "hello", "request for cpu")
    delete_trigger(settings, db, "hello")


def test_on_persist_plugin_sees_each_new_file(stack):
    settings = stack
    db = new_db(settings, "persist")
    create_trigger(settings, db, "files", "on_persist.py", "persist:all_tables")
    write(settings, db, "\n".join(f"big,host=h{i % 5} v={i} {T0 + i}" for i in range(150)))
    got = wait_for(lambda: rows(settings, db, "SELECT \"table\", rows, path FROM persisted_files"),
                   timeout=60, what="a persisted_files point")
    assert got[0]["table"] == "big" and got[0]["rows"] > 0
    assert got[0]["path"].startswith(f"{db}/big/")
    delete_trigger(settings, db, "files")


def test_failing_plugins_are_logged_and_disabled_or_retried(stack):
    settings = stack
    db = new_db(settings, "fail")
    create_trigger(settings, db, "to_disable", "raises.py", "table:boom", error_behavior="disable")
    create_trigger(settings, db, "to_log", "raises.py", "table:boom", error_behavior="log")
    create_trigger(settings, db, "to_retry", "flaky.py", "table:flaky", error_behavior="retry")
    write(settings, db, f"boom,host=a v=1 {T0}")
    write(settings, db, f"flaky,host=a v=1 {T0}")

    def state(name: str) -> bool:
        found = call(settings, "GET", "/api/v3/configure/processing_engine_trigger", params={"db": db}).json()
        return {t["trigger_name"]: t["disabled"] for t in found}[name]

    wait_for(lambda: state("to_disable"), what="the trigger to be disabled")
    assert logged(settings, db, "to_disable", "boom from plugin", "ERROR") == 1
    assert logged(settings, db, "to_disable", "about to fail", "WARN") == 1
    # each trigger has its own consumer group: records fetched together are one call, so the
    # second write must follow to_log's first call, or both could arrive as one batch
    wait_for(lambda: logged(settings, db, "to_log", "boom from plugin", "ERROR") == 1, what="a first error")
    write(settings, db, f"boom,host=a v=2 {T0 + 1}")
    wait_for(lambda: logged(settings, db, "to_log", "boom from plugin", "ERROR") == 2, what="a second error")
    assert not state("to_log")
    assert logged(settings, db, "to_disable", "boom from plugin") == 1
    # retry: two failures, then success on the same batch
    got = wait_for(lambda: rows(settings, db, "SELECT attempts FROM flaky_done"), what="the retried write")
    assert got == [{"attempts": 3}]
    assert logged(settings, db, "to_retry", "flaky failure", "ERROR") == 2
    # the worker is unaffected (it still ingests) and the failures are counted
    write(settings, db, f"boom,host=a v=3 {T0 + 2}")
    wait_for(lambda: len(rows(settings, db, "SELECT * FROM boom")) == 3, what="ingest after failures")
    metrics = call(settings, "GET", "/metrics").text
    assert f'influent_trigger_errors_total{{db="{db}",trigger="to_disable"}} 1.0' in metrics
    assert f'influent_trigger_errors_total{{db="{db}",trigger="to_retry"}} 2.0' in metrics
    assert metric(settings, "influent_plugin_log_lines_total", db) >= 6
    for name in ("to_disable", "to_log", "to_retry"):
        delete_trigger(settings, db, name)


def test_sleeping_plugin_does_not_stall_ingest(stack):
    settings = stack
    db = new_db(settings, "sleepy")
    create_trigger(settings, db, "nap", "sleepy.py", "table:slow", {"seconds": "10"})
    write(settings, db, f"slow v=1 {T0}")
    wait_for(lambda: logged(settings, db, "nap", "sleeping"), what="the plugin to fall asleep")
    write(settings, db, "\n".join(f"fast,host=h{i} v={i} {T0 + i}" for i in range(50)))
    wait_for(lambda: len(rows(settings, db, "SELECT * FROM fast")) == 50, what="rows written meanwhile")
    assert logged(settings, db, "nap", "woke up") == 0, "the rows must be queryable while the plugin sleeps"
    wait_for(lambda: logged(settings, db, "nap", "woke up"), timeout=30, what="the plugin to wake up")
    delete_trigger(settings, db, "nap")


def test_trigger_management_api_and_cli(stack):
    settings = stack
    db = new_db(settings, "cli")
    base = [sys.executable, "-m", "influent.cli", "--http-bind", settings.http_bind, "trigger"]

    def cli(*args: str) -> str:
        done = subprocess.run(base + list(args), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("create", "--db", db, "--name", "t1", "--plugin", "derive_on_write.py", "--spec", "table:cpu",
        "--arg", "factor=2", "--error-behavior", "retry")
    assert "t1" in cli("list", "--db", db) and "enabled" in cli("list", "--db", db)
    cli("disable", "--db", db, "--name", "t1")
    assert "disabled" in cli("list", "--db", db)
    cli("enable", "--db", db, "--name", "t1")
    listed = call(settings, "GET", "/api/v3/configure/processing_engine_trigger", params={"db": db}).json()
    assert listed[0]["trigger_arguments"] == {"factor": "2"}
    assert listed[0]["trigger_settings"]["error_behavior"] == "retry"
    refused = call(settings, "DELETE", "/api/v3/configure/processing_engine_trigger",
                   json={"db": db, "trigger_name": "t1"})
    assert refused.status_code == 409  # enabled: needs force
    cli("delete", "--db", db, "--name", "t1", "--force")
    assert call(settings, "GET", "/api/v3/configure/processing_engine_trigger", params={"db": db}).json() == []
    bad = {"db": db, "plugin_filename": "derive_on_write.py", "trigger_name": "x",
           "trigger_specification": "table:cpu"}
    for change, status in (({"trigger_specification": "sometimes"}, 400),
                           ({"plugin_filename": "missing.py"}, 400),
                           ({"db": unique("nodb")}, 404),
                           ({"trigger_settings": {"error_behavior": "explode"}}, 400)):
        resp = call(settings, "POST", "/api/v3/configure/processing_engine_trigger", json={**bad, **change})
        assert resp.status_code == status, (change, resp.text)
