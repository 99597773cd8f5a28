"""Named crash points for fault tests: ``INFLUENT_FAILPOINT=<name>`` makes the process SIGKILL
itself when it reaches that point (once per process). Off unless the variable is set."""
from __future__ import annotations

import os
import signal

_ACTIVE = os.environ.get("INFLUENT_FAILPOINT", "")


def failpoint(name: str) -> None:
    if _ACTIVE and _ACTIVE == name:
        os.kill(os.getpid(), signal.SIGKILL)
