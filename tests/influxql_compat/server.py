"""A throw-away InfluxDB 1.x server for the InfluxQL compatibility suite.

The suite compares influent's ``/query`` answers with a real ``influxd`` (Debian package
``influxdb``, 1.6.x) fed the same line protocol. The server runs on free loopback ports with
all of its state in a temp dir, no auth, no reporting and no ``_internal`` monitor database,
and dies with the test process.
"""
from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influent import devstack

_PR_SET_PDEATHSIG = 1


def ensure_influxdb_installed() -> str:
    """``influxd`` (InfluxDB 1.x), installed from Debian's ``influxdb`` package when missing."""
    return devstack.ensure_debian_package("influxd", "influxdb")


def render_config(root: Path, rpc_port: int, http_port: int) -> str:
    """An influxd 1.x config keeping everything under ``root`` and on loopback."""
    return f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root / 'meta'}"
  logging-enabled = false

[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[retention]
  enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


@dataclass
class InfluxDB1:
    """A running influxd: its HTTP port and process."""

    service: devstack.Service
    http_port: int

    def request(self, method: str, path: str, params: dict[str, str],
                body: bytes | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request(method, f"{path}?{urllib.parse.urlencode(params)}", body=body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def query(self, q: str, db: str | None = None, epoch: str | None = None,
              method: str = "GET") -> dict[str, Any]:
        """The JSON body of ``/query`` (the same request shape influent's API answers)."""
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        status, body = self.request(method, "/query", params)
        return json.loads(body)

    def write(self, db: str, lines: bytes, precision: str = "ns") -> None:
        status, body = self.request("POST", "/write", {"db": db, "precision": precision}, lines)
        if status != 204:
            raise RuntimeError(f"influxd /write failed ({status}): {body[:500]!r}")

    def stop(self) -> None:
        devstack.stop(self.service, timeout=10)


def start_influxdb(root: Path, timeout: float = 60.0) -> InfluxDB1:
    """Install if needed, then start influxd with its state in ``root``; wait for ``/ping``."""
    influxd = ensure_influxdb_installed()
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rpc_port, http_port = devstack.free_ports(2)
    config = root / "influxdb.conf"
    config.write_text(render_config(root, rpc_port, http_port))
    log_path = root / "influxd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([influxd, "run", "-config", str(config)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, preexec_fn=_die_with_parent,
                                env=dict(os.environ, INFLUXDB_CONFIG_PATH=str(config)))
    service = devstack.Service(name="influxd", pid=proc.pid,
                               endpoint=f"http://127.0.0.1:{http_port}", log_path=log_path,
                               process=proc, marker=str(config))
    service.check = lambda: devstack.http_status("127.0.0.1", http_port, "/ping") == 204
    devstack.wait_ready(service, timeout)
    return InfluxDB1(service=service, http_port=http_port)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (writes are visible at once in
    1.x, but a fresh database may take a moment to create its shard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
