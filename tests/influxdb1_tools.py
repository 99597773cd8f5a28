"""``influx_inspect`` (InfluxDB 1.x's offline tool) for the import tests.

Debian's ``influxdb`` package ships only ``influxd``, so the tool is built from InfluxDB's own
Go module (``go install``, through the Go module proxy) into ``~/.cache/influent/bin`` once,
when it is not on the PATH already. Needs the Go toolchain (``go`` on the PATH or in
``/usr/local/go/bin``)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

INFLUX_INSPECT_MODULE = "github.com/influxdata/influxdb/cmd/influx_inspect@v1.8.10"
CACHE_BIN = Path.home() / ".cache" / "influent" / "bin"


def ensure_influx_inspect() -> str:
    found = shutil.which("influx_inspect")
    if found:
        return found
    built = CACHE_BIN / "influx_inspect"
    if built.exists():
        return str(built)
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise RuntimeError("influx_inspect is missing and no Go toolchain is there to build it "
                           f"(go install {INFLUX_INSPECT_MODULE})")
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([go, "install", INFLUX_INSPECT_MODULE], capture_output=True, text=True,
                          env=dict(os.environ, GOBIN=str(CACHE_BIN), GOFLAGS="-mod=mod"),
                          timeout=1200)
    if proc.returncode != 0 or not built.exists():
        raise RuntimeError(f"go install {INFLUX_INSPECT_MODULE} failed:\n{proc.stderr[-4000:]}")
    return str(built)
