"""Keeping the dev stack running: a service that exits or is killed is started again, with
exponential backoff, and every restart is logged and counted.

One supervisor watches a stack: the foreground process of ``influent dev up --foreground``
(``make run``), or a detached ``influent dev supervise`` that ``influent dev up`` spawns. Its pid
file (``pids/supervisor.pid``) lets ``influent dev down`` stop it *before* the services, so a
clean stop never looks like a crash; SIGINT/SIGTERM end its watch the same way. Restart counts
and the last exit of every service go to ``<state>/supervisor.json`` for ``influent dev status``.
Kafka and Redis are restarted on their kept data directories (the broker is never reformatted,
Redis replays its AOF).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from influent.config import PROJECT_ROOT, Settings
from influent.devstack.processes import DevstackError, Service, _spawn, stop
from influent.devstack.services import _influent_env
from influent.devstack.stack import (_STOP_TIMEOUTS, START_TIMEOUTS, StackLayout, _launch,
                                     _stop_started, _write_pid_file)
from influent.devstack.supervisor_files import claim_supervisor, status_path, supervisor_pid

#: Seconds between two looks at the services.
POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class Backoff:
    """Delay before restart n (n = restarts since the service was last healthy for
    ``healthy_reset`` seconds): ``initial * 2**n``, at most ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0
    healthy_reset: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.initial * (2 ** min(failures, 30)), self.maximum)


@dataclass
class Watched:
    """One supervised service and its restart history."""

    name: str
    service: Service
    started_here: bool
    restarts: int = 0
    failures: int = 0  # restarts since the service was last healthy for a while
    healthy_since: float | None = field(default_factory=time.monotonic)
    ready_by: float | None = None  # a relaunched service must answer before this
    restart_at: float | None = None  # an exited service is relaunched at this time
    last_exit: str = ""
    last_restart: str = ""

    @property
    def state(self) -> str:
        if self.restart_at is not None:
            return "waiting"
        return "starting" if self.ready_by is not None else "running"


def describe_exit(service: Service) -> str:
    """'exit code 3', 'killed by SIGKILL', or 'gone' (an adopted process: no exit status)."""
    code = service.process.poll() if service.process is not None else None
    if code is None:
        return "gone"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Restarts the services of one stack until :attr:`stop_requested`."""

    def __init__(self, settings: Settings, result: list[tuple[Service, bool]], *,
                 controller_port: int | None = None, foreground: bool = True,
                 backoff: Backoff = Backoff(), echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.layout = StackLayout.of(settings)
        self.controller_port = controller_port
        self.foreground = foreground
        self.backoff = backoff
        self.echo = echo
        self.watched = [Watched(s.name, s, started) for s, started in result]
        #: Set by SIGINT/SIGTERM (see :func:`supervise`): the watch ends after the current look.
        self.stop_requested = False

    # ---- one look at every service --------------------------------------------------
    def poll(self) -> None:
        now = time.monotonic()
        changed = False
        for w in self.watched:
            changed |= self._poll_one(w, now)
        if changed:
            self.write_status()

    def _poll_one(self, w: Watched, now: float) -> bool:
        if w.restart_at is not None:
            if now >= w.restart_at:
                self._relaunch(w, now)
                return True
            return False
        if not w.service.alive():
            self._exited(w, describe_exit(w.service), now)
            return True
        if w.ready_by is not None:
            if _answers(w.service):
                w.ready_by, w.healthy_since = None, now
                self.echo(f"{w.name} is healthy again (pid {w.service.pid})")
                return True
            if now >= w.ready_by:
                self._exited(w, "did not become healthy in time", now)
                return True
            return False
        if w.failures and w.healthy_since is not None and \
                now - w.healthy_since >= self.backoff.healthy_reset:
            w.failures = 0  # healthy for a while: the next restart is quick again
        return False

    def _exited(self, w: Watched, why: str, now: float) -> None:
        stop(w.service, _STOP_TIMEOUTS.get(w.name, 20.0))  # leftovers of its process group
        self.layout.pid_file(w.name).unlink(missing_ok=True)
        delay = self.backoff.delay(w.failures)
        w.failures += 1
        w.last_exit, w.healthy_since, w.ready_by = why, None, None
        w.restart_at = now + delay
        self.echo(f"{w.name} (pid {w.service.pid}) {why}; restart {w.restarts + 1} "
                  f"in {delay:.1f}s (log {w.service.log_path})")

    def _relaunch(self, w: Watched, now: float) -> None:
        try:
            service = _launch(w.name, self.settings, self.controller_port,
                              die_with_parent=self.foreground)
        except DevstackError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            w.restart_at = None
            self._exited(w, f"could not be started: {first_line}", now)
            return
        _write_pid_file(self.settings, service)
        w.service, w.started_here = service, True
        w.restarts += 1
        w.restart_at = None
        w.ready_by = now + START_TIMEOUTS[w.name]
        w.last_restart = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.echo(f"{w.name} restarted (restart {w.restarts}, pid {service.pid})")

    # ---- status ---------------------------------------------------------------------
    def write_status(self) -> None:
        doc = {"pid": os.getpid(),
               "services": {w.name: {"restarts": w.restarts, "state": w.state,
                                     "pid": w.service.pid, "last_exit": w.last_exit,
                                     "last_restart": w.last_restart} for w in self.watched}}
        path = status_path(self.layout)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    # ---- the watch ------------------------------------------------------------------
    def run(self) -> None:
        """Watch until :attr:`stop_requested` is set, then return. A signal only sets the flag,
        so a restart in progress is never cut between spawning a process and recording it."""
        self.write_status()
        while not self.stop_requested:
            time.sleep(POLL_INTERVAL)
            if not self.stop_requested:
                self.poll()
        self.echo("stopping ...")

    def started(self) -> list[tuple[Service, bool]]:
        """``(service, started by this run)`` pairs, for :func:`_stop_started`."""
        return [(w.service, w.started_here) for w in self.watched]


def _answers(service: Service) -> bool:
    try:
        return bool(service.check and service.check())
    except Exception:  # noqa: BLE001 - not answering yet
        return False


def supervise(settings: Settings, result: list[tuple[Service, bool]], *,
              controller_port: int | None = None, foreground: bool = True,
              backoff: Backoff = Backoff(), echo: Callable[[str], None] = print) -> int:
    """Watch ``result`` (from :func:`dev_up`) until SIGINT/SIGTERM, restarting what exits;
    then stop, in reverse order, every service this process started. Returns 0."""
    layout = StackLayout.of(settings)
    supervisor = Supervisor(settings, result, controller_port=controller_port,
                            foreground=foreground, backoff=backoff, echo=echo)

    def request_stop(_signum: int, _frame: object) -> None:
        supervisor.stop_requested = True

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        claim_supervisor(layout)
        supervisor.run()
    finally:
        for sig in previous:  # a second Ctrl-C must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        try:
            _stop_started(supervisor.started(), settings, echo)
            reused = [s.name for s, started in supervisor.started() if not started]
            if reused:
                echo(f"left running (started earlier): {', '.join(reused)}; "
                     f"`influent dev down` stops them")
            supervisor.write_status()
        finally:
            if supervisor_pid(layout) == os.getpid():
                layout.pid_file("supervisor").unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


def spawn_supervisor(settings: Settings, services: list[str], controller_port: int | None,
                     timeout: float = 60.0) -> int:
    """Start a detached ``influent dev supervise`` for the running stack (``influent dev up``
    without ``--foreground``); returns its pid once it has claimed the stack."""
    layout = StackLayout.of(settings)
    cmd = [sys.executable, "-m", "influent.cli", "dev", "supervise",
           "--services", ",".join(services), "--state-dir", str(layout.root)]
    if controller_port is not None:
        cmd += ["--controller-port", str(controller_port)]
    service = _spawn("supervisor", cmd, layout.logs, endpoint="", marker="dev supervise",
                     env=_influent_env(settings.replace(state_dir=layout.root)),
                     cwd=PROJECT_ROOT)
    deadline = time.monotonic() + timeout
    while supervisor_pid(layout) != service.pid:
        if not service.alive() or time.monotonic() >= deadline:
            stop(service, 10.0)
            raise DevstackError(f"the supervisor did not start; log {service.log_path}:\n"
                                f"{service.log_tail()}")
        time.sleep(0.1)
    return service.pid
