"""The peer: a throw-away InfluxDB 1.x (Debian's ``influxdb``, 1.6.x) run beside influent.

Same loopback-only config as the InfluxQL compatibility suite (``render_config`` is imported
from ``tests/influxql_compat/server.py``), plus a few ``[data]`` knobs per benchmark:

* ``bench``: the cache is snapshotted to TSM after 2 s without writes and a cold shard is fully
  compacted after 5 s, so the storage figure is the on-disk size of compacted TSM files, not of
  the WAL. Write-path defaults are kept (the WAL is fsynced on every write, as 1.x ships).
* ``recovery``: nothing is snapshotted (large cache limits, 1.x's cold-snapshot default of
  10 min), so every written point is in the WAL and a restart replays all of it.

Every process is started in its own session and dies with the benchmark process.
"""
from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from influent import devstack
from tests.influxql_compat.server import render_config

_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork


def _die_with_parent() -> None:  # runs in the child between fork and exec: SIGKILL with us
    _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


PROFILES = {
    "bench": {
        "cache-snapshot-write-cold-duration": '"2s"',
        "compact-full-write-cold-duration": '"5s"',
    },
    "recovery": {
        "cache-max-memory-size": '"8g"',
        "cache-snapshot-memory-size": '"4g"',
        "cache-snapshot-write-cold-duration": '"1h"',
    },
}


def influxd_binary() -> str:
    """``influxd``, installed from Debian's ``influxdb`` package when missing."""
    return devstack.ensure_debian_package("influxd", "influxdb")


def influxd_version() -> str:
    try:
        out = subprocess.run([influxd_binary(), "version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return out or "influxd (unknown version)"
    except (OSError, subprocess.SubprocessError, devstack.DevstackError) as exc:
        return f"unknown ({exc})"


def config_text(root: Path, rpc_port: int, http_port: int, profile: str) -> str:
    text = render_config(root, rpc_port, http_port)
    extra = "".join(f"  {k} = {v}\n" for k, v in PROFILES[profile].items())
    text = text.replace("[data]\n", "[data]\n" + extra, 1)
    return text


def dir_bytes(path: Path) -> int:
    """Bytes of all regular files below ``path`` (like ``du -b``, apparent sizes)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime (seconds) of every live process in process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields after "(comm)": [0]=state [2]=pgrp ... [11]=utime [12]=stime
        if int(stat[2]) == pgid:
            total += int(stat[11]) + int(stat[12])
    return total / clock_ticks()


@dataclass
class Peer:
    """A running influxd (InfluxDB 1.x): its state root, HTTP port and process."""

    root: Path
    profile: str = "bench"
    service: devstack.Service | None = None
    http_port: int = 0
    rpc_port: int = 0
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    # ---- lifecycle --------------------------------------------------------------------------
    @classmethod
    def start(cls, root: Path, profile: str = "bench", timeout: float = 120.0) -> "Peer":
        peer = cls(root=Path(root).resolve(), profile=profile)
        peer.rpc_port, peer.http_port = devstack.free_ports(2)
        peer.launch()
        peer.wait_ready(timeout)
        return peer

    def launch(self) -> float:
        """Start influxd without waiting; returns the monotonic start time."""
        influxd = influxd_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "influxdb.conf"
        config.write_text(config_text(self.root, self.rpc_port, self.http_port, self.profile))
        env = dict(os.environ, INFLUXDB_CONFIG_PATH=str(config))
        log_path = self.root / "influxd.log"
        t0 = time.monotonic()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([influxd, "run", "-config", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=env,
                                    preexec_fn=_die_with_parent)
        self.service = devstack.Service(name="influxd", pid=proc.pid, endpoint=self.url,
                                        log_path=log_path, process=proc, marker=str(config))
        port = self.http_port
        self.service.check = lambda: devstack.http_status("127.0.0.1", port, "/ping") == 204
        return t0

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.service is not None
        devstack.wait_ready(self.service, timeout)

    def restart(self, timeout: float = 600.0, kill: bool = False) -> float:
        """Stop (or SIGKILL: a crash) and start again on the same state; seconds from the new
        process's start to /ping 204."""
        if kill and self.service is not None:
            self._close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.service.pid, signal.SIGKILL)
        self.stop()
        t0 = self.launch()
        self.wait_ready(timeout)
        return time.monotonic() - t0

    def stop(self) -> None:
        self._close()
        if self.service is not None:
            devstack.stop(self.service, timeout=60)

    @property
    def pid(self) -> int:
        assert self.service is not None
        return self.service.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pid)

    def data_bytes(self, db: str) -> dict[str, int]:
        """On-disk bytes of one database: TSM (+ index) files and WAL segments."""
        return {"data": dir_bytes(self.root / "data" / db), "wal": dir_bytes(self.root / "wal" / db)}

    def tsm_files(self, db: str) -> list[Path]:
        return sorted((self.root / "data" / db).rglob("*.tsm"))

    # ---- HTTP -------------------------------------------------------------------------------
    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, params: dict[str, str],
                body: bytes | None = None, timeout: float = 300.0) -> tuple[int, bytes]:
        """One request on a kept-alive connection (reopened after an error)."""
        target = f"{path}?{urllib.parse.urlencode(params)}"
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                                        timeout=timeout)
            try:
                self._conn.request(method, target, body=body)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self._close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def query_raw(self, q: str, db: str | None = None, epoch: str | None = None) -> tuple[int, bytes]:
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        return self.request("GET", "/query", params)

    def query(self, q: str, db: str | None = None, epoch: str | None = None) -> dict[str, Any]:
        status, body = self.query_raw(q, db, epoch)
        return json.loads(body)

    def create_database(self, db: str) -> None:
        status, body = self.request("POST", "/query", {"q": f'CREATE DATABASE "{db}"'})
        if status != 200:
            raise RuntimeError(f"influxd CREATE DATABASE failed ({status}): {body[:300]!r}")

    def write(self, db: str, lines: bytes, precision: str = "ns") -> None:
        status, body = self.request("POST", "/write", {"db": db, "precision": precision}, lines)
        if status != 204:
            raise RuntimeError(f"influxd /write failed ({status}): {body[:500]!r}")

    def count(self, db: str, measurement: str = "cpu", field_name: str = "usage_user") -> int:
        """Rows of ``measurement`` (count of one field that every row has)."""
        data = self.query(f'SELECT count("{field_name}") FROM "{measurement}"', db=db)
        try:
            return int(data["results"][0]["series"][0]["values"][0][1])
        except (KeyError, IndexError, TypeError):
            return 0
