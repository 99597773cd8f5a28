"""The supervisor's files under the state folder: its pid file (``pids/supervisor.pid``, so
``influent dev down`` can stop it before the services) and ``supervisor.json`` (restart counts
for ``influent dev status``)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from influent.devstack.processes import DevstackError, _pid_alive, _start_ticks

if TYPE_CHECKING:
    from influent.devstack.stack import StackLayout


def status_path(layout: StackLayout) -> Path:
    return layout.root / "supervisor.json"


def read_status(layout: StackLayout) -> dict[str, dict[str, object]]:
    """The supervisor's per-service counters (empty when none was written)."""
    try:
        return dict(json.loads(status_path(layout).read_text()).get("services", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def supervisor_pid(layout: StackLayout) -> int | None:
    """The pid of the running supervisor of this stack, or None."""
    try:
        pid_text, ticks_text = layout.pid_file("supervisor").read_text().split()[:2]
        pid, ticks = int(pid_text), int(ticks_text.split("=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid, start_ticks=ticks) else None


def claim_supervisor(layout: StackLayout) -> None:
    """Record this process as the stack's supervisor (raises when another one runs)."""
    other = supervisor_pid(layout)
    if other is not None and other != os.getpid():
        raise DevstackError(f"the stack is already supervised by pid {other}; "
                            f"`influent dev down` stops it")
    path = layout.pid_file("supervisor")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\nstart={_start_ticks(os.getpid())}\n")
    os.replace(tmp, path)


def stop_supervisor(layout: StackLayout, timeout: float = 180.0) -> int | None:
    """SIGTERM the stack's supervisor and wait until it has stopped what it started."""
    pid = supervisor_pid(layout)
    if pid is None:
        layout.pid_file("supervisor").unlink(missing_ok=True)
        return None
    ticks = _start_ticks(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid, start_ticks=ticks) and time.monotonic() < deadline:
        time.sleep(0.1)
    layout.pid_file("supervisor").unlink(missing_ok=True)
    return pid
