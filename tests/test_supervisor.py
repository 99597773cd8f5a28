"""The supervised dev stack: ``influent dev up`` restarts a service that exits or is killed
(with backoff), counts it in ``influent dev status``, and a clean stop restarts nothing."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from influent import devstack
from influent.config import Settings
from influent.devstack.supervisor import Backoff, Supervisor
from influent.devstack.supervisor_files import read_status, supervisor_pid
from tests.harness import ROOT, cli_env, count, produce, read_topic, unique, wait_for
from topics.admin import ensure_topics


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert Backoff().delay(1000) == Backoff().maximum


def _pid_of(settings: Settings, name: str) -> int | None:
    """The live pid the stack's pid file names for ``name``."""
    status = devstack.dev_status(settings)[name]
    return int(status["pid"]) if status["state"] == "running" else None


def _kill_and_wait_for_new_pid(settings: Settings, name: str, within: float = 10.0) -> int:
    old = _pid_of(settings, name)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (pid := _pid_of(settings, name)) not in (None, old) and pid,
                   timeout=within, interval=0.05, what=f"a new {name} process")
    assert new != old
    return new


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "influent.cli", "dev", *args], cwd=ROOT,
                          env=cli_env(settings), capture_output=True, text=True, timeout=300)


def test_background_supervisor_restarts_redis_on_its_data_and_down_stops_it(
        tmp_path: Path) -> None:
    """``influent dev up`` (background) leaves a supervisor behind: a SIGKILLed Redis comes
    back on its AOF; ``influent dev down`` stops the supervisor first, so nothing restarts."""
    (redis_port,) = devstack.free_ports(1)
    settings = Settings(state_dir=tmp_path / "state", redis_url=f"redis://127.0.0.1:{redis_port}/0")
    try:
        up = _cli(settings, "up", "--services", "redis")
        assert up.returncode == 0, up.stdout + up.stderr
        layout = devstack.StackLayout.of(settings)
        supervisor = supervisor_pid(layout)
        assert supervisor is not None and "supervised by pid" in up.stdout
        client = redis.Redis.from_url(settings.redis_url)
        client.set("kept", b"1")
        client.close()

        _kill_and_wait_for_new_pid(settings, "redis")
        wait_for(lambda: devstack.dev_status(settings)["redis"]["healthy"], timeout=60,
                 what="the restarted redis to answer")
        client = redis.Redis.from_url(settings.redis_url)
        assert client.get("kept") == b"1"  # the AOF survived the restart
        client.close()
        status = _cli(settings, "status")
        assert "restarts 1 (last: gone)" in status.stdout, status.stdout

        down = _cli(settings, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"supervisor stopped (pid {supervisor})" in down.stdout
        assert supervisor_pid(layout) is None
        assert devstack.dev_status(settings)["redis"]["state"] == "stopped"
        assert read_status(layout)["redis"]["restarts"] == 1  # the stop was no crash
        log = (layout.logs / "supervisor.log").read_text()
        assert "redis restarted (restart 1" in log and "restart 2" not in log
    finally:
        _cli(settings, "down")


def _write_lp(settings: Settings, db: str, lines: list[str]) -> None:
    resp = httpx.post(f"{settings.http_url}/api/v3/write_lp", params={"db": db},
                      content="\n".join(lines).encode(), timeout=60)
    assert resp.status_code == 204, resp.text


def _lines(table: str, start: int, n: int) -> list[str]:
    return [f"{table},host=h{i % 3} v={i}i {1_700_000_000_000_000_000 + i}"
            for i in range(start, start + n)]


def test_make_run_restarts_a_killed_worker_and_api_and_keeps_the_gap(tmp_path: Path) -> None:
    """``make run`` (``influent dev up --foreground``): kill -9 of the worker or the API brings
    a new one within 10 s, the writes of the gap become visible, status counts the restarts,
    and Ctrl-C stops everything without a restart."""
    kafka, controller, redis_port, http, web = devstack.free_ports(5)
    settings = Settings(state_dir=tmp_path / "state", kafka_bootstrap=f"127.0.0.1:{kafka}",
                        redis_url=f"redis://127.0.0.1:{redis_port}/0",
                        http_bind=f"127.0.0.1:{http}", worker_web_port=web, partitions=2,
                        tick_interval=1.0)
    out = open(tmp_path / "make-run.out", "w+")
    up = subprocess.Popen([sys.executable, "-m", "influent.cli", "dev", "up", "--foreground",
                           "--controller-port", str(controller)], cwd=ROOT,
                          env=cli_env(settings), stdout=out, stderr=subprocess.STDOUT,
                          start_new_session=True)
    db, table = unique("sup"), "cpu"
    try:
        wait_for(lambda: all(e["healthy"] for e in devstack.dev_status(settings).values()),
                 timeout=400, interval=1.0, what="the whole stack to be healthy")
        _write_lp(settings, db, _lines(table, 0, 50))
        wait_for(lambda: count(settings, db, table) == 50, timeout=120, what="50 rows")

        _kill_and_wait_for_new_pid(settings, "worker")
        _write_lp(settings, db, _lines(table, 50, 50))  # written while no worker runs
        wait_for(lambda: count(settings, db, table) == 100, timeout=240,
                 what="the writes of the worker's gap")

        _kill_and_wait_for_new_pid(settings, "api")
        asyncio.run(produce(settings, ["\n".join(_lines(table, 100, 50)).encode()], db))
        wait_for(lambda: devstack.dev_status(settings)["api"]["healthy"], timeout=120,
                 what="the restarted API to answer")
        wait_for(lambda: count(settings, db, table) == 150, timeout=240,
                 what="the writes of the API's gap")

        status = _cli(settings, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines()}
        assert "restarts 1 (last: killed by SIGKILL)" in lines["worker"], status.stdout
        assert "restarts 1 (last: killed by SIGKILL)" in lines["api"], status.stdout
        assert "restarts 0" in lines["kafka"] and "restarts 0" in lines["redis"]

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=240) == 0
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=240)
    out.seek(0)
    text = out.read()
    stopping = text.index("stopping ...")
    assert "restarted" not in text[stopping:], text[stopping:]
    layout = devstack.StackLayout.of(settings)
    counters = json.loads((layout.root / "supervisor.json").read_text())["services"]
    assert {name: c["restarts"] for name, c in counters.items()} == {
        "kafka": 0, "redis": 0, "worker": 1, "api": 1}
    assert all(e["state"] == "stopped" for e in devstack.dev_status(settings).values())


def test_restarts_back_off_while_a_service_cannot_start(tmp_path: Path) -> None:
    """Each failed restart doubles the wait (up to the maximum); once the service can start
    again it is restarted on its data and counted once."""
    (port,) = devstack.free_ports(1)
    settings = Settings(state_dir=tmp_path / "state", redis_url=f"redis://127.0.0.1:{port}/0")
    lines: list[str] = []
    result = devstack.dev_up(settings, ["redis"], foreground=True, echo=lines.append)
    supervisor = Supervisor(settings, result, backoff=Backoff(initial=0.2, maximum=0.8),
                            echo=lines.append)
    watched = supervisor.watched[0]
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def polled(condition):
        return lambda: (supervisor.poll(), condition())[1]

    try:
        client = redis.Redis.from_url(settings.redis_url)
        client.set("kept", b"1")
        client.close()
        os.kill(watched.service.pid, signal.SIGKILL)
        wait_for(polled(lambda: watched.restart_at is not None), timeout=30,
                 what="the exit to be noticed")
        blocker.bind(("127.0.0.1", port))  # the next relaunches find the port taken
        blocker.listen()
        wait_for(polled(lambda: sum("could not be started" in line for line in lines) >= 4),
                 timeout=60, what="four failed relaunches")
        delays = [float(m) for m in re.findall(r"restart 1 in (\d+\.\d)s", "\n".join(lines))]
        assert delays[:5] == [0.2, 0.4, 0.8, 0.8, 0.8]
        assert watched.restarts == 0
        blocker.close()
        wait_for(polled(lambda: watched.state == "running"), timeout=60,
                 what="redis restarted and answering")
        assert watched.restarts == 1 and "redis is healthy again" in lines[-1]
        client = redis.Redis.from_url(settings.redis_url)
        assert client.get("kept") == b"1"
        client.close()
        assert read_status(devstack.StackLayout.of(settings))["redis"]["restarts"] == 1
    finally:
        blocker.close()
        for service, _ in supervisor.started():
            devstack.stop(service)
        devstack.dev_down(settings, echo=lines.append)


def test_a_killed_kafka_broker_is_restarted_on_its_kept_log(tmp_path: Path) -> None:
    """kill -9 of the dev stack's broker: the supervisor starts it again on the same data
    folder (not reformatted), and a message acknowledged before the kill is still there."""
    kafka, controller = devstack.free_ports(2)
    settings = Settings(state_dir=tmp_path / "state", kafka_bootstrap=f"127.0.0.1:{kafka}",
                        partitions=1)
    lines: list[str] = []
    result = devstack.dev_up(settings, ["kafka"], controller_port=controller, foreground=True,
                             echo=lines.append)
    supervisor = Supervisor(settings, result, controller_port=controller, echo=lines.append)
    watched = supervisor.watched[0]
    try:
        cluster_id = (tmp_path / "state" / "kafka" / "cluster.id").read_text()
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, [b"cpu v=1i 1"], "kept"))
        old = watched.service.pid
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (supervisor.poll(), watched.restarts == 1
                          and watched.state == "running")[1], timeout=180, interval=0.2,
                 what="the broker restarted and serving")
        assert watched.service.pid != old
        assert (tmp_path / "state" / "kafka" / "cluster.id").read_text() == cluster_id
        records = asyncio.run(read_topic(settings, settings.writes_topic, until_count=1,
                                         timeout=60))
        assert [r.value for r in records] == [b"cpu v=1i 1"]
        assert any("kafka (pid" in line and "killed by SIGKILL" in line for line in lines)
    finally:
        for service, _ in supervisor.started():
            devstack.stop(service, 30.0)
        devstack.dev_down(settings, echo=lines.append)
