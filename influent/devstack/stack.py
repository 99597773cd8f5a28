"""The dev stack (``influent dev up|down|status``): which services run where, adopting ones
already running, starting the missing ones in order, stopping and reporting them."""
from __future__ import annotations

import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from influent.config import Settings
from influent.devstack.install import ensure_redis_installed
from influent.devstack.processes import DevstackError, Service, _check_port_free, _pid_alive, _tail, http_status, kafka_metadata, redis_ping, stop, wait_ready
from influent.devstack.services import _probe_host, launch_api, launch_kafka, launch_redis, launch_worker
from influent.devstack.supervisor_files import read_status, stop_supervisor, supervisor_pid

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})

# ---- the dev stack -----------------------------------------------------------------------

#: Start order (``down`` and Ctrl-C stop in reverse).
STACK = ("kafka", "redis", "worker", "api")
_STOP_TIMEOUTS = {"kafka": 30.0, "redis": 20.0, "worker": 60.0, "api": 20.0}
_MARKERS = {"worker": "influent.cli worker", "api": "influent.cli api"}


@dataclass(frozen=True)
class StackLayout:
    """Where the dev stack keeps things under ``Settings.state_dir``."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> "StackLayout":
        return cls(Path(settings.state_dir).resolve())

    kafka = property(lambda self: self.root / "kafka")
    redis = property(lambda self: self.root / "redis")
    objects = property(lambda self: self.root / "objects")
    logs = property(lambda self: self.root / "logs")
    pids = property(lambda self: self.root / "pids")

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def create(self) -> None:
        for d in (self.kafka, self.redis, self.objects, self.logs, self.pids):
            d.mkdir(parents=True, exist_ok=True)


def _kafka_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port or 9092)


def _redis_address(settings: Settings) -> tuple[str, int]:
    url = urllib.parse.urlsplit(settings.redis_url)
    return url.hostname or "127.0.0.1", url.port or 6379


def _marker(name: str, settings: Settings) -> str:
    layout = StackLayout.of(settings)
    if name == "kafka":
        return str(layout.kafka / "server.properties")
    if name == "redis":  # redis-server retitles itself "redis-server 127.0.0.1:<port>"
        return f"127.0.0.1:{_redis_address(settings)[1]}"
    return _MARKERS[name]


def _endpoint(name: str, settings: Settings) -> str:
    if name == "kafka":
        return settings.kafka_bootstrap
    if name == "redis":
        return settings.redis_url
    if name == "worker":
        return f"web :{settings.worker_web_port}"
    return settings.http_url


def _adopt(name: str, settings: Settings) -> Service | None:
    """The running service named by its pid file, or None (a stale pid file is removed)."""
    layout = StackLayout.of(settings)
    pid_file = layout.pid_file(name)
    try:
        lines = pid_file.read_text().split()
        pid = int(lines[0])
        ticks = int(lines[1].split("=", 1)[1]) if len(lines) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    marker = _marker(name, settings)
    if not _pid_alive(pid, marker, ticks):
        pid_file.unlink(missing_ok=True)
        return None
    return Service(name=name, pid=pid, endpoint=_endpoint(name, settings),
                   log_path=layout.logs / f"{name}.log", marker=marker, start_ticks=ticks)


def _write_pid_file(settings: Settings, service: Service) -> None:
    """``<pid>`` on the first line, then ``start=<ticks>`` (the process identity)."""
    path = StackLayout.of(settings).pid_file(service.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{service.pid}\nstart={service.start_ticks}\n"
                   if service.start_ticks is not None else f"{service.pid}\n")
    os.replace(tmp, path)


def _health(name: str, settings: Settings) -> bool:
    try:
        if name == "kafka":
            return bool(kafka_metadata(*_kafka_address(settings), timeout=1.0)[0])
        if name == "redis":
            return redis_ping(*_redis_address(settings))
        if name == "worker":
            return _worker_logged_ready(StackLayout.of(settings).logs / "worker.log") or (
                http_status("127.0.0.1", settings.worker_web_port, "/") > 0)
        return http_status(_probe_host(settings.http_host), settings.http_port, "/health") == 200
    except Exception:  # noqa: BLE001
        return False


def _worker_logged_ready(log_path: Path) -> bool:
    """Whether the worker's latest run (after its last start banner) logged ``Ready``."""
    text = _tail(log_path, 0, 100_000)
    return b"Ready" in text.rsplit("==== ", 1)[-1].encode()


def _managed(name: str, settings: Settings) -> bool:
    """Kafka/Redis pointing to another host are external: the dev stack leaves them alone."""
    if name == "kafka":
        return _kafka_address(settings)[0] in LOCAL_HOSTS
    if name == "redis":
        return _redis_address(settings)[0] in LOCAL_HOSTS
    return True


def _launch(name: str, settings: Settings, controller_port: int | None, *,
            die_with_parent: bool) -> Service:
    """Spawn one service without waiting for it (``service.check`` tells when it answers)."""
    layout = StackLayout.of(settings)
    if name == "kafka":
        _, port = _kafka_address(settings)
        return launch_kafka(layout.kafka, layout.logs, port, controller_port or port + 1,
                            die_with_parent=die_with_parent, learn_classes=die_with_parent)
    if name == "redis":
        ensure_redis_installed()
        return launch_redis(layout.redis, layout.logs, _redis_address(settings)[1],
                            die_with_parent=die_with_parent)
    settings = settings.replace(state_dir=layout.root)  # absolute for the children
    if name == "worker":
        _check_port_free(settings.worker_web_port, "worker web")
        return launch_worker(settings, layout.logs, die_with_parent=die_with_parent)
    _check_port_free(settings.http_port, "query API", _probe_host(settings.http_host))
    return launch_api(settings, layout.logs, die_with_parent=die_with_parent)


#: Health-wait seconds per service when no ``timeout`` is given.
START_TIMEOUTS = {"kafka": 90.0, "redis": 30.0, "worker": 120.0, "api": 60.0}


def _start(name: str, settings: Settings, controller_port: int | None, *,
           die_with_parent: bool, timeout: float | None) -> Service:
    service = _launch(name, settings, controller_port, die_with_parent=die_with_parent)
    return wait_ready(service, timeout or START_TIMEOUTS[name])


def dev_up(
    settings: Settings,
    services: Sequence[str] = STACK,
    *,
    controller_port: int | None = None,
    foreground: bool = False,
    timeout: float | None = None,
    echo: Callable[[str], None] = print,
) -> list[tuple[Service, bool]]:
    """Start (or reuse) the dev stack's ``services`` in :data:`STACK` order.

    Returns ``(service, started_now)`` pairs. Running services named by live pid files are
    reused; state under ``settings.state_dir`` is kept between runs. On any failure the
    services started by this call are stopped again (reverse order) before the error
    propagates. ``foreground`` ties the children's lives to this process (see
    :func:`~influent.devstack.supervisor.supervise`); otherwise they are detached and outlive it.
    """
    unknown = set(services) - set(STACK)
    if unknown:
        raise DevstackError(f"unknown service(s) {sorted(unknown)}; choose from {list(STACK)}")
    layout = StackLayout.of(settings)
    layout.create()
    result: list[tuple[Service, bool]] = []
    try:
        for name in STACK:
            if name not in services:
                continue
            if not _managed(name, settings):
                echo(f"{name:<7} external       {_endpoint(name, settings)} (not managed)")
                continue
            running = _adopt(name, settings)
            if running is not None:
                result.append((running, False))
                _wait_healthy(running, settings, timeout or 60.0)
                echo(f"{name:<7} already running pid {running.pid:<7} {running.endpoint}")
                continue
            started = time.monotonic()
            service = _start(name, settings, controller_port,
                             die_with_parent=foreground, timeout=timeout)
            _write_pid_file(settings, service)
            result.append((service, True))
            echo(f"{name:<7} started pid {service.pid:<7} {service.endpoint:<28} "
                 f"in {time.monotonic() - started:.1f}s  (log {service.log_path})")
    except BaseException:
        _stop_started(result, settings, echo)
        raise
    return result


def _wait_healthy(service: Service, settings: Settings, timeout: float) -> None:
    """Wait for a reused service (maybe still starting) to answer; never stops it."""
    deadline = time.monotonic() + timeout
    while not _health(service.name, settings):
        if not service.alive() or time.monotonic() >= deadline:
            raise DevstackError(
                f"{service.name} (pid {service.pid}, started earlier) is not answering at "
                f"{service.endpoint}; log {service.log_path}:\n{_tail(service.log_path)}\n"
                f"`influent dev down` stops it")
        time.sleep(0.2)


def _stop_started(result: list[tuple[Service, bool]], settings: Settings,
                  echo: Callable[[str], None]) -> None:
    layout = StackLayout.of(settings)
    for service, started_now in reversed(result):
        if started_now:
            stop(service, _STOP_TIMEOUTS.get(service.name, 20.0))
            layout.pid_file(service.name).unlink(missing_ok=True)
            echo(f"{service.name:<7} stopped")


def dev_down(settings: Settings, services: Sequence[str] = STACK,
             echo: Callable[[str], None] = print) -> int:
    """Stop the stack's supervisor first (so nothing is restarted), then the services named by
    pid files, in reverse order; returns how many services were stopped."""
    layout = StackLayout.of(settings)
    supervisor = stop_supervisor(layout)
    if supervisor is not None:
        echo(f"supervisor stopped (pid {supervisor})")
    count = 0
    for name in reversed(STACK):
        if name not in services:
            continue
        service = _adopt(name, settings)
        if service is None:
            continue
        stop(service, _STOP_TIMEOUTS.get(name, 20.0))
        layout.pid_file(name).unlink(missing_ok=True)
        echo(f"{name:<7} stopped (pid {service.pid})")
        count += 1
    if not count:
        echo("nothing running")
    return count


def dev_status(settings: Settings) -> dict[str, dict[str, object]]:
    """Each service's state: running (pid, healthy?), external or stopped, and how often the
    supervisor restarted it (``restarts``; ``supervised`` tells whether a supervisor runs)."""
    layout = StackLayout.of(settings)
    supervised = supervisor_pid(layout) is not None
    counters = read_status(layout)
    status: dict[str, dict[str, object]] = {}
    for name in STACK:
        entry: dict[str, object] = {"endpoint": _endpoint(name, settings),
                                    "log": str(layout.logs / f"{name}.log")}
        if not _managed(name, settings):
            entry.update(state="external", healthy=_health(name, settings))
        else:
            service = _adopt(name, settings)
            if service is None:
                entry.update(state="stopped", healthy=False)
            else:
                entry.update(state="running", pid=service.pid, healthy=_health(name, settings))
        restarts = counters.get(name, {})
        entry.update(supervised=supervised, restarts=int(restarts.get("restarts", 0)),
                     last_exit=str(restarts.get("last_exit", "")))
        status[name] = entry
    return status
