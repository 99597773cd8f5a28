"""Named fault points for fault tests, off unless ``INFLUENT_FAILPOINT=<name>`` is set: at a
crash point the process SIGKILLs itself; at a skip point the caller passes over the event once,
as if it had never been delivered."""
from __future__ import annotations

import os
import signal

_ACTIVE = os.environ.get("INFLUENT_FAILPOINT", "")


def failpoint(name: str) -> None:
    if _ACTIVE and _ACTIVE == name:
        os.kill(os.getpid(), signal.SIGKILL)


_SKIPPED: set[str] = set()


def skip_once(name: str) -> bool:
    """True the first time the active skip point ``name`` is reached in this process."""
    if _ACTIVE and _ACTIVE == name and name not in _SKIPPED:
        _SKIPPED.add(name)
        return True
    return False
