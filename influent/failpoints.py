"""Named fault points for fault tests, off unless ``INFLUENT_FAILPOINT=<name>`` is set: at a
crash point the process SIGKILLs itself."""
from __future__ import annotations

import os
import signal

_ACTIVE = os.environ.get("INFLUENT_FAILPOINT", "")


def failpoint(name: str) -> None:
    if _ACTIVE and _ACTIVE == name:
        os.kill(os.getpid(), signal.SIGKILL)

