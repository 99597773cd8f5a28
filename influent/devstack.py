"""The project's own local infrastructure: real Kafka, Redis and S3 processes, managed from Python.

One library serves both ``influent dev up|down|status|install`` and the test-session fixtures
(``tests/conftest.py``), so the stack a developer runs is the stack the tests run.

Services
--------
* **Kafka** -- the Apache Kafka broker jars from Maven Central (``infra/kafka/pom.xml``, resolved
  once by ``mvn`` into ``${XDG_CACHE_HOME:-~/.cache}/influent/kafka-<version>/lib``), one
  single-node KRaft broker+controller on 127.0.0.1 (:func:`start_kafka`).
* **Redis** -- Debian's ``redis-server`` with AOF on (:func:`start_redis`);
  :func:`ensure_redis_installed` installs it with ``apt-get`` when it is missing.
* **S3** -- moto's server from the current virtualenv (:func:`start_s3`).
* **worker** / **api** -- ``python -m influent.cli worker|api`` for the dev stack
  (:func:`start_worker`, :func:`start_api`), configured through ``Settings.as_env()``.

Every child is started in its own session (``start_new_session=True``: its own process group,
no controlling terminal), with stdout/stderr appended to one log file per service, and
:func:`stop` terminates the whole group (SIGTERM, then SIGKILL), so nothing is left behind.
Every ``start_*`` waits until the service really answers (a Kafka Metadata request, a Redis
``PING``, an HTTP response) and raises :class:`ServiceStartError` with the tail of the service's
log when it exits early or does not answer in time.

Environment knobs (infrastructure only, not application settings):
``XDG_CACHE_HOME`` (cache root), ``INFLUENT_KAFKA_CDS=0`` (do not learn/use the JVM class-data
archive that makes the broker start about twice as fast), ``INFLUENT_KAFKA_HEAP`` (``-Xmx``,
default ``512m``).
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import http.client
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from influent.config import PROJECT_ROOT, Settings

__all__ = [
    "KAFKA_VERSION",
    "DevstackError",
    "MissingPrerequisite",
    "PortInUse",
    "ServiceStartError",
    "Service",
    "require",
    "ensure_redis_installed",
    "kafka_home",
    "kafka_classpath",
    "free_port",
    "free_ports",
    "port_in_use",
    "kafka_metadata",
    "redis_ping",
    "http_status",
    "launch_kafka",
    "launch_redis",
    "launch_s3",
    "wait_ready",
    "start_kafka",
    "start_redis",
    "start_s3",
    "launch_worker",
    "launch_api",
    "start_worker",
    "start_api",
    "stop",
    "StackLayout",
    "STACK",
    "dev_up",
    "run_foreground",
    "dev_down",
    "dev_status",
    "dev",
]

#: Apache Kafka release used locally; the cache folder is named after it and it is passed to
#: ``mvn`` as ``-Dkafka.version`` (keep ``infra/kafka/pom.xml``'s default in sync).
KAFKA_VERSION = "3.9.2"
KAFKA_INFRA_DIR = PROJECT_ROOT / "infra" / "kafka"
KAFKA_POM = KAFKA_INFRA_DIR / "pom.xml"
KAFKA_LOG4J = KAFKA_INFRA_DIR / "log4j.properties"
#: Largest Kafka message the local broker accepts: 16 MiB of payload plus batch overhead.
KAFKA_MAX_MESSAGE_BYTES = 20 * 1024 * 1024

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})


# ---- errors ------------------------------------------------------------------------------


class DevstackError(RuntimeError):
    """Base class of every dev-stack failure (the CLI prints these without a traceback)."""


class MissingPrerequisite(DevstackError):
    """A program the stack needs (java, mvn, redis-server, ...) is not installed."""


class PortInUse(DevstackError):
    """A port a service needs is already taken by another process."""


class ServiceStartError(DevstackError):
    """A service exited early or did not become healthy in time; the message has its log tail."""


_HINTS = {
    "java": "a Java 17+ runtime is expected on the machine (Debian: `apt-get install "
    "openjdk-17-jre-headless`); the Kafka broker runs on it",
    "mvn": "Apache Maven is expected on the machine (Debian: `apt-get install maven`); it "
    "downloads the Kafka broker jars from Maven Central once into ~/.cache/influent",
    "redis-server": "`make run` installs it (Debian package `redis-server`, via apt-get); or "
    "run `influent dev install`, or `sudo apt-get install redis-server` yourself",
    "apt-get": "redis-server is installed with apt-get on Debian/Ubuntu; on other systems "
    "install Redis 7 yourself so that `redis-server` is on PATH",
}


def require(binary: str) -> str:
    """Return the path of ``binary`` on PATH, or raise :class:`MissingPrerequisite`.

    The message names the missing prerequisite and how to get it.
    """
    path = shutil.which(binary)
    if path:
        return path
    hint = _HINTS.get(binary, "install it so that it is on PATH")
    raise MissingPrerequisite(
        f"missing prerequisite: `{binary}` was not found on PATH "
        f"(PATH={os.environ.get('PATH', '')}); {hint}"
    )


def ensure_debian_package(binary: str, package: str) -> str:
    """Return the path of ``binary``, installing Debian's ``package`` first when it is missing.

    Runs ``apt-get update`` then ``apt-get install -y <package>`` non-interactively: directly as
    root, through ``sudo -n`` otherwise. Raises :class:`MissingPrerequisite` when that is not
    possible (no apt-get, not root and no password-less sudo, install failure).
    """
    def located() -> str | None:
        return shutil.which(binary) or (
            f"/usr/bin/{binary}" if os.path.exists(f"/usr/bin/{binary}") else None)

    path = located()
    if path:
        return path
    apt = require("apt-get")
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
    else:
        raise MissingPrerequisite(
            f"missing prerequisite: `{binary}` is not installed, and installing it needs root "
            f"(no sudo here): run `apt-get install {package}` as root"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (
        [apt, "-q", "update"],
        [apt, "-q", "-y", "-o", "Dpkg::Options::=--force-confdef",
         "-o", "Dpkg::Options::=--force-confold", "install", "--no-install-recommends", package],
    ):
        proc = subprocess.run(prefix + args, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr)[-3000:]
            raise MissingPrerequisite(
                f"missing prerequisite: `{binary}`; installing it failed "
                f"(`{' '.join(prefix + args)}` exited {proc.returncode}):\n{output}"
            )
    path = located()
    if not path:
        raise MissingPrerequisite(f"apt-get installed {package} but `{binary}` is not on PATH")
    return path


def ensure_redis_installed() -> str:
    """``redis-server``, installed from Debian's package when missing."""
    return ensure_debian_package("redis-server", "redis-server")


# ---- processes ---------------------------------------------------------------------------


@dataclass
class Service:
    """A running service process.

    ``pid`` is also its process-group id (children start in a new session). ``process`` is the
    ``Popen`` when this Python process started it, ``None`` when adopted from a pid file.
    """

    name: str
    pid: int
    endpoint: str
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    #: Returns True once the service answers; used by :func:`wait_ready`.
    check: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    #: Where this run's output starts in ``log_path`` (the file is appended to across runs).
    log_offset: int = field(default=0, repr=False)
    #: Something that must occur in /proc/<pid>/cmdline, to recognise the process later.
    marker: str = field(default="", repr=False)
    #: The process start time (/proc/<pid>/stat field 22): with the pid, a unique identity
    #: (a pid file naming a recycled pid is recognised as stale).
    start_ticks: int | None = field(default=None, repr=False)
    #: Called by :func:`stop` once the process has exited (only for processes we started).
    on_stopped: Callable[["Service"], None] | None = field(default=None, repr=False,
                                                          compare=False)

    def alive(self) -> bool:
        """True while the process exists (and is not a zombie)."""
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid, self.marker, self.start_ticks)

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines this run wrote to its log."""
        return _tail(self.log_path, self.log_offset, lines)


def _tail(path: Path, offset: int = 0, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(offset, size - 64 * 1024)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(log is empty)"


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (index 0 = state, 19 = start time)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat and len(stat) > 19 else None


def _pid_alive(pid: int, marker: str = "", start_ticks: int | None = None) -> bool:
    """True when ``pid`` runs and is not a zombie, and is the expected process: same start
    time when ``start_ticks`` is given, else (if given) ``marker`` in its command line."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if start_ticks is not None:
        return len(stat) > 19 and int(stat[19]) == start_ticks
    return not marker or marker in _proc_cmdline(pid)


_PR_SET_PDEATHSIG = 1
# Resolved up front: the child (between fork and exec) must not dlopen/dlsym.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _spawn(
    name: str,
    cmd: Sequence[str],
    log_dir: Path,
    *,
    endpoint: str,
    marker: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> Service:
    """Start ``cmd`` in a new session with stdout/stderr appended to ``<log_dir>/<name>.log``.

    ``die_with_parent`` makes the kernel SIGKILL the child when the *calling thread* dies (use it
    from the main thread of test sessions and foreground stacks, never for detached services).
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        offset = log.seek(0, os.SEEK_END)
        banner = f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(cmd)}\n"
        log.write(banner.encode())
        log.flush()
        offset += len(banner.encode())
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    return Service(name=name, pid=proc.pid, endpoint=endpoint, log_path=log_path, process=proc,
                   log_offset=offset, marker=marker, start_ticks=_start_ticks(proc.pid))


def wait_ready(service: Service, timeout: float) -> Service:
    """Poll ``service.check`` until it answers; on early exit or timeout stop it and raise."""
    assert service.check is not None, f"{service.name} has no health check"
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if not service.alive():
            code = service.process.poll() if service.process is not None else None
            raise ServiceStartError(
                f"{service.name} exited during startup (exit code {code}); "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        try:
            ok = service.check()
        except Exception:  # a refused connection, a half-started server: not ready yet
            ok = False
        # A reply can come from another process holding the port: ours must still be alive.
        if ok and service.alive():
            return service
        if time.monotonic() >= deadline:
            stop(service, timeout=5)
            raise ServiceStartError(
                f"{service.name} did not become healthy at {service.endpoint} within "
                f"{timeout:g}s; log {service.log_path}:\n{service.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def stop(service: Service, timeout: float = 20.0) -> None:
    """Stop ``service`` and its whole process group: SIGTERM, wait, then SIGKILL.

    Safe to call twice and on dead services; returns once no process of the group is left.
    """
    pid = service.pid
    was_alive = service.alive()
    # Our own child: its pid (= pgid) cannot be recycled before we reap it. An adopted pid is
    # only trusted while alive() confirmed its identity.
    if service.process is not None or (was_alive and _pgid(pid) == pid):
        group: int | None = pid
    else:
        group = None

    def signal_all(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group is not None:
                os.killpg(group, sig)
            else:
                os.kill(pid, sig)

    if was_alive:
        signal_all(signal.SIGTERM)
        if not _wait_exit(service, timeout):
            signal_all(signal.SIGKILL)
            _wait_exit(service, 10)
    elif service.process is not None:
        service.process.poll()
    # Stragglers the leader left in its group (children that ignored SIGTERM, ...).
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
    hook, service.on_stopped = service.on_stopped, None
    if hook is not None and service.process is not None and service.process.poll() is not None:
        with contextlib.suppress(OSError):
            hook(service)


def _wait_exit(service: Service, timeout: float) -> bool:
    if service.process is not None:
        try:
            service.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while service.alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(service.pid, os.WNOHANG)  # reap it if it happens to be our child
    return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies may be left (reaped by their parent soon): check /proc.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and int(stat[2]) == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


# ---- ports -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on right now (all probed while held, so they
    differ). They are taken below the kernel's ephemeral range when it leaves room: a port
    from bind(0) can be handed to some outgoing connection before our server binds it."""
    socks = []
    low = _ephemeral_low()
    candidates = random.sample(range(15000, low), min(200, low - 15000)) if low > 16000 else []
    try:
        for port in candidates:
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
        while len(socks) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port`` (TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def _port_owner(port: int) -> str:
    """Best effort: 'pid N (cmdline)' of the process listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            parts = row.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return "another process"
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    cmd = _proc_cmdline(int(entry.name)).strip()
                    return f"pid {entry.name} ({cmd[:160]})"
        except OSError:
            continue
    return "another process (not visible to this user)"


def _check_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    if port_in_use(port, host):
        hint = ""
        owner = _port_owner(port)
        if "redis-server" in owner and port == 6379:
            hint = (" -- probably Debian's system Redis service: stop it "
                    "(`sudo systemctl disable --now redis-server`) or choose another port "
                    "with INFLUENT_REDIS_URL")
        raise PortInUse(
            f"port {port} ({what}) is already in use by {owner}{hint}; stop that process or "
            f"configure another port"
        )


# ---- health probes -----------------------------------------------------------------------


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> tuple[list[int], int]:
    """Send a real Kafka Metadata (v1) request; return (broker node ids, controller id).

    Raises on connection or protocol errors. A KRaft broker lists itself only once it is
    registered and unfenced, i.e. ready to create topics and serve clients.
    """
    client_id = b"influent-devstack"
    body = struct.pack(">i", 0)  # topics: empty array -> no topic metadata
    header = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        data = _recv_exact(sock, size)
    correlation, n_brokers = struct.unpack_from(">ii", data, 0)
    if correlation != 1:
        raise ConnectionError("unexpected Kafka correlation id")
    pos = 8
    brokers = []
    for _ in range(n_brokers):
        node_id, host_len = struct.unpack_from(">ih", data, pos)
        pos += 6 + host_len
        (_port, rack_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append(node_id)
    (controller,) = struct.unpack_from(">i", data, pos)
    return brokers, controller


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when Redis answers ``PING`` with ``+PONG`` (not ``-LOADING``)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def http_status(host: str, port: int, path: str = "/", timeout: float = 1.0) -> int:
    """The HTTP status of ``GET path`` (raises when nothing answers HTTP)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# ---- Kafka provisioning ------------------------------------------------------------------


def kafka_home() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/influent/kafka-<KAFKA_VERSION>`` (outside the work tree)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "influent" / f"kafka-{KAFKA_VERSION}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _classpath_of(lib: Path) -> str:
    return os.pathsep.join(str(p) for p in sorted(lib.glob("*.jar")))


#: True once this process downloaded the jars (a fresh machine: do not learn a CDS archive).
_PROVISIONED_NOW = False


def kafka_classpath() -> str:
    """The broker's Java classpath; resolves the jars with Maven the first time only.

    ``mvn dependency:copy-dependencies`` on ``infra/kafka/pom.xml`` into ``kafka_home()/lib``,
    under a file lock (concurrent sessions wait for one download), through a temporary folder
    renamed into place, then a ``.complete`` marker. Later calls just list the jars.
    """
    home = kafka_home()
    lib = home / "lib"
    marker = home / ".complete"
    broker_jar = lib / f"kafka_2.13-{KAFKA_VERSION}.jar"
    if marker.exists() and broker_jar.exists():
        return _classpath_of(lib)
    require("java")
    mvn = require("mvn")
    with _file_lock(home / ".lock"):
        if marker.exists() and broker_jar.exists():
            return _classpath_of(lib)
        marker.unlink(missing_ok=True)
        tmp = home / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(KAFKA_POM),
               f"-Dkafka.version={KAFKA_VERSION}", "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        started = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise MissingPrerequisite(
                f"could not resolve the Kafka {KAFKA_VERSION} broker jars from Maven Central "
                f"(`{' '.join(cmd)}` exited {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        os.replace(tmp, lib)
        global _PROVISIONED_NOW
        _PROVISIONED_NOW = True
        jars = sorted(p.name for p in lib.glob("*.jar"))
        marker.write_text(
            f"kafka {KAFKA_VERSION}: {len(jars)} jars resolved in "
            f"{time.monotonic() - started:.1f}s at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
            + "\n".join(jars) + "\n"
        )
    return _classpath_of(lib)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return str(Path(java_home, "bin", "java"))
    return require("java")


def _kafka_jvm_options() -> list[str]:
    heap = os.environ.get("INFLUENT_KAFKA_HEAP", "512m")
    return [
        f"-Xmx{heap}", "-Xms256m",
        # Kafka's own defaults (kafka-run-class.sh KAFKA_JVM_PERFORMANCE_OPTS):
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
        "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration={KAFKA_LOG4J.resolve().as_uri()}",
    ]


def _cds_enabled() -> bool:
    return os.environ.get("INFLUENT_KAFKA_CDS", "1").strip().lower() not in {
        "0", "false", "no", "off"}


def _cds_archive_path(java: str) -> Path:
    """Where the broker's class-data archive for this JVM build lives (keyed by libjvm)."""
    real = Path(java).resolve()
    libjvm = real.parent.parent / "lib" / "server" / "libjvm.so"
    stamp = f"{real}:{(libjvm if libjvm.exists() else real).stat().st_mtime_ns}"
    return kafka_home() / f"cds-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}.jsa"


def _cds_options(java: str, learn: bool) -> tuple[list[str], Callable[[Service], None] | None]:
    """JVM options for the broker's dynamic AppCDS archive, and a hook for :func:`stop`.

    Loading the broker's classes from the archive cuts its start from about 2.8s to 1.4s
    here. The archive is *learned* by a broker that ``learn``s (a test session's or a
    foreground stack's: a process that will stop the broker itself): the JVM writes it while
    exiting (a few seconds once), and the hook moves it into place after a clean exit. It is
    not learned in the run that had to download the jars (so a fresh CI machine never pays
    for an archive it will not reuse). Disabled with ``INFLUENT_KAFKA_CDS=0``.
    """
    if not _cds_enabled():
        return [], None
    archive = _cds_archive_path(java)
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"], None
    if not learn or _PROVISIONED_NOW:
        return [], None
    for stale in archive.parent.glob("cds-*.jsa.tmp-*"):  # from dead sessions
        with contextlib.suppress(ValueError, OSError):
            if not _pid_alive(int(stale.name.split(".tmp-", 1)[1].split("-")[0])):
                stale.unlink()
    tmp = archive.with_name(f"{archive.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def install(service: Service) -> None:
        code = service.process.returncode if service.process is not None else None
        if code in (0, 143, -signal.SIGTERM) and tmp.exists() and tmp.stat().st_size > 0:
            for old in archive.parent.glob("cds-*.jsa"):
                old.unlink(missing_ok=True)  # archives of earlier JVM builds
            os.replace(tmp, archive)
        tmp.unlink(missing_ok=True)

    return [f"-XX:ArchiveClassesAtExit={tmp}"], install


def _new_cluster_id() -> str:
    """A Kafka cluster id: base64url of a random UUID, like ``kafka-storage random-uuid``."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _kafka_properties(data_dir: Path, port: int, controller_port: int,
                      auto_create_topics: bool) -> str:
    log_dir = data_dir / "log"
    props = {
        # One KRaft node that is both broker and controller, loopback only.
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "metadata.log.dir": str(log_dir),
        # Sized for 2 cores.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        # Single node: every replication factor and ISR is 1.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # Fewer internal partitions: the first group/transaction coordinator lookup creates
        # these topics, and every test session starts from an empty broker.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        # Topics: created explicitly (Faust declares what it uses with the right partition
        # count; tests use the admin client). With auto-create off, producing to an undeclared
        # topic fails instead of silently creating a 1-partition topic that later breaks
        # co-partitioning (PartitionsMismatch).
        "auto.create.topics.enable": "true" if auto_create_topics else "false",
        "num.partitions": "1",
        "delete.topic.enable": "true",
        # Groups: join at once, and allow the short session timeouts tests use.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # Compacted topics (Faust changelogs) are really compacted; small dedupe buffer so the
        # cleaner fits the modest heap.
        "log.cleaner.enable": "true",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        # Only closed segments are compacted: 64 MiB segments (not 1 GiB) let a long-running
        # dev stack's changelogs actually shrink.
        "log.segment.bytes": str(64 * 1024 * 1024),
        # Messages up to 16 MiB (plus batch overhead).
        "message.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "replica.fetch.response.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "socket.request.max.bytes": str(128 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def launch_kafka(
    data_dir: Path | str,
    log_dir: Path | str,
    port: int,
    controller_port: int,
    *,
    auto_create_topics: bool = False,
    die_with_parent: bool = False,
    learn_classes: bool = False,
) -> Service:
    """Format (first time only) and start the broker without waiting; see :func:`start_kafka`."""
    data_dir = Path(data_dir).resolve()
    log_dir = Path(log_dir).resolve()
    _check_port_free(port, "kafka")
    _check_port_free(controller_port, "kafka controller")
    classpath = kafka_classpath()
    java = _java()
    if not KAFKA_LOG4J.exists():
        raise MissingPrerequisite(f"{KAFKA_LOG4J} is missing (run from the source tree)")
    data_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    props.write_text(_kafka_properties(data_dir, port, controller_port, auto_create_topics))
    cds_opts, on_stopped = _cds_options(java, learn_classes)
    fmt_cds = [o for o in cds_opts if o.startswith("-XX:SharedArchiveFile=")]
    id_file = data_dir / "cluster.id"
    if not id_file.exists():
        id_file.write_text(_new_cluster_id() + "\n")
    if not (data_dir / "log" / "meta.properties").exists():
        log_dir.mkdir(parents=True, exist_ok=True)
        fmt = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", *fmt_cds,
               f"-Dlog4j.configuration={KAFKA_LOG4J.resolve().as_uri()}", "-cp", classpath,
               "kafka.tools.StorageTool", "format", "--ignore-formatted",
               "-t", id_file.read_text().strip(), "-c", str(props)]
        proc = subprocess.run(fmt, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        with open(log_dir / "kafka.log", "a") as log:
            log.write(f"\n==== formatting {data_dir / 'log'}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise ServiceStartError(
                f"kafka storage format failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
    cmd = [java, *_kafka_jvm_options(), *cds_opts, "-cp", classpath, "kafka.Kafka", str(props)]
    service = _spawn("kafka", cmd, log_dir, endpoint=f"127.0.0.1:{port}", marker=str(props),
                     cwd=data_dir, die_with_parent=die_with_parent)

    def check() -> bool:
        brokers, _controller = kafka_metadata("127.0.0.1", port)
        return bool(brokers)

    service.check = check
    service.on_stopped = on_stopped
    return service


def start_kafka(
    data_dir: Path | str,
    log_dir: Path | str,
    port: int,
    controller_port: int,
    timeout: float = 90.0,
    *,
    auto_create_topics: bool = False,
    die_with_parent: bool = False,
    learn_classes: bool = False,
) -> Service:
    """Start a single-node KRaft Kafka broker+controller on 127.0.0.1 and wait until it serves.

    ``data_dir`` keeps ``server.properties`` (rewritten each start), ``cluster.id`` (generated
    once) and the log/metadata directory ``log/`` (formatted with ``kafka.tools.StorageTool`` on
    first start only, so data survives restarts). Output goes to ``<log_dir>/kafka.log``.
    Healthy = a Metadata request lists the broker (registered and unfenced). Topic
    auto-creation is off unless ``auto_create_topics``. ``learn_classes``: this process will
    :func:`stop` the broker itself, which may then record the JVM class-data archive that
    makes later starts faster (see :func:`_cds_options`).
    """
    service = launch_kafka(data_dir, log_dir, port, controller_port,
                           auto_create_topics=auto_create_topics,
                           die_with_parent=die_with_parent, learn_classes=learn_classes)
    return wait_ready(service, timeout)


def launch_redis(data_dir: Path | str, log_dir: Path | str, port: int, *,
                 die_with_parent: bool = False) -> Service:
    """Start ``redis-server`` without waiting; see :func:`start_redis`."""
    redis = require("redis-server")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _check_port_free(port, "redis")
    cmd = [redis, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
           "--appendonly", "yes", "--daemonize", "no", "--logfile", "", "--save", "",
           "--protected-mode", "yes", "--databases", "16"]
    service = _spawn("redis", cmd, log_dir, endpoint=f"redis://127.0.0.1:{port}/0",
                     marker=f"127.0.0.1:{port}", cwd=data_dir, die_with_parent=die_with_parent)
    service.check = lambda: redis_ping("127.0.0.1", port)
    return service


def start_redis(data_dir: Path | str, log_dir: Path | str, port: int, timeout: float = 30.0,
                *, die_with_parent: bool = False) -> Service:
    """Start ``redis-server`` on 127.0.0.1:``port`` with AOF on (``appendonly yes``), data in
    ``data_dir``, in the foreground of its own session; wait until it answers ``PING``."""
    return wait_ready(launch_redis(data_dir, log_dir, port, die_with_parent=die_with_parent),
                      timeout)


def launch_s3(log_dir: Path | str, port: int, *, die_with_parent: bool = False) -> Service:
    """Start moto's S3-compatible server without waiting; see :func:`start_s3`."""
    _check_port_free(port, "s3 (moto)")
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    service = _spawn("s3", cmd, log_dir, endpoint=f"http://127.0.0.1:{port}",
                     marker="moto.server", env=env, die_with_parent=die_with_parent)
    service.check = lambda: http_status("127.0.0.1", port, "/") > 0
    return service


def start_s3(log_dir: Path | str, port: int, timeout: float = 30.0, *,
             die_with_parent: bool = False) -> Service:
    """Start moto's server (``python -m moto.server``, this interpreter) on 127.0.0.1:``port``;
    wait until it answers HTTP. Any access key/secret is accepted."""
    return wait_ready(launch_s3(log_dir, port, die_with_parent=die_with_parent), timeout)


# ---- influent's own processes ------------------------------------------------------------


def _influent_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.as_env())
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host


def launch_worker(settings: Settings, log_dir: Path | str, *,
                  die_with_parent: bool = False) -> Service:
    """Start ``python -m influent.cli worker`` (the Faust worker) without waiting."""
    cmd = [sys.executable, "-m", "influent.cli", "worker"]
    service = _spawn("worker", cmd, log_dir, endpoint=f"web :{settings.worker_web_port}",
                     marker="influent.cli worker", env=_influent_env(settings),
                     cwd=PROJECT_ROOT, die_with_parent=die_with_parent)
    path, offset, port = service.log_path, service.log_offset, settings.worker_web_port

    def check() -> bool:
        with open(path, "rb") as fh:
            fh.seek(offset)
            if b"Ready" in fh.read():  # Faust logs "[^Worker]: Ready"
                return True
        return http_status("127.0.0.1", port, "/") > 0

    service.check = check
    return service


def start_worker(settings: Settings, log_dir: Path | str, timeout: float = 120.0, *,
                 die_with_parent: bool = False) -> Service:
    """Start the Faust worker; healthy when alive and it logged ``Ready`` or its web port
    (``settings.worker_web_port``) answers HTTP."""
    return wait_ready(launch_worker(settings, log_dir, die_with_parent=die_with_parent),
                      timeout)


def launch_api(settings: Settings, log_dir: Path | str, *,
               die_with_parent: bool = False) -> Service:
    """Start ``python -m influent.cli api`` (the query API) without waiting."""
    cmd = [sys.executable, "-m", "influent.cli", "api"]
    service = _spawn("api", cmd, log_dir, endpoint=settings.http_url,
                     marker="influent.cli api", env=_influent_env(settings), cwd=PROJECT_ROOT,
                     die_with_parent=die_with_parent)
    host, port = _probe_host(settings.http_host), settings.http_port
    service.check = lambda: http_status(host, port, "/health") == 200
    return service


def start_api(settings: Settings, log_dir: Path | str, timeout: float = 60.0, *,
              die_with_parent: bool = False) -> Service:
    """Start the query API; healthy when ``GET http://<http_bind>/health`` returns 200."""
    return wait_ready(launch_api(settings, log_dir, die_with_parent=die_with_parent), timeout)


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


def _start(name: str, settings: Settings, controller_port: int | None, *,
           die_with_parent: bool, timeout: float | None) -> Service:
    layout = StackLayout.of(settings)
    if name == "kafka":
        _, port = _kafka_address(settings)
        return start_kafka(layout.kafka, layout.logs, port,
                           controller_port or port + 1, timeout or 90.0,
                           die_with_parent=die_with_parent, learn_classes=die_with_parent)
    if name == "redis":
        ensure_redis_installed()
        return start_redis(layout.redis, layout.logs, _redis_address(settings)[1],
                           timeout or 30.0, die_with_parent=die_with_parent)
    settings = settings.replace(state_dir=layout.root)  # absolute for the children
    if name == "worker":
        _check_port_free(settings.worker_web_port, "worker web")
        return start_worker(settings, layout.logs, timeout or 120.0,
                            die_with_parent=die_with_parent)
    _check_port_free(settings.http_port, "query API", _probe_host(settings.http_host))
    return start_api(settings, layout.logs, timeout or 60.0, die_with_parent=die_with_parent)


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
    :func:`run_foreground`); otherwise they are detached and outlive it.
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


def run_foreground(settings: Settings, result: list[tuple[Service, bool]],
                   echo: Callable[[str], None] = print) -> int:
    """Wait until SIGINT/SIGTERM (or a service dies), then stop what this run started, in
    reverse order. Returns the exit code (0, or 1 when a service died on its own)."""
    code = 0
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(0.5)
            dead = [s for s, _ in result if not s.alive()]
            if dead:
                for s in dead:
                    echo(f"{s.name} exited unexpectedly; log {s.log_path}:\n{s.log_tail(30)}")
                code = 1
                break
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        for sig in previous:  # a second Ctrl-C must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        try:
            _stop_started(result, settings, echo)
            reused = [s.name for s, started in result if not started]
            if reused:
                echo(f"left running (started earlier): {', '.join(reused)}; "
                     f"`influent dev down` stops them")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code


def dev_down(settings: Settings, services: Sequence[str] = STACK,
             echo: Callable[[str], None] = print) -> int:
    """Stop the services named by pid files, in reverse order; returns how many were stopped."""
    layout = StackLayout.of(settings)
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
    """Each service's state: running (pid, healthy?), external or stopped."""
    layout = StackLayout.of(settings)
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
        status[name] = entry
    return status


# ---- CLI ---------------------------------------------------------------------------------


def _settings_from(ctx: click.Context, state_dir: str | None) -> Settings:
    obj = ctx.find_object(Settings)
    if obj is None and isinstance(ctx.obj, dict) and isinstance(ctx.obj.get("settings"), Settings):
        obj = ctx.obj["settings"]
    settings = obj if obj is not None else Settings.from_env()
    if state_dir:
        settings = settings.replace(state_dir=Path(state_dir))
    return settings


def _services_option(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in STACK]
    if unknown:
        raise click.BadParameter(f"unknown service(s) {unknown}; choose from {list(STACK)}")
    return names


_state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False), default=None,
    help="State folder (default: Settings.state_dir, INFLUENT_STATE_DIR or <repo>/.state).")
_services_opt = click.option(
    "--services", default=",".join(STACK), show_default=True,
    help="Comma-separated subset of the stack.")


@click.group("dev")
def dev() -> None:
    """Run influent's local stack: Kafka (KRaft), Redis, the Faust worker and the query API."""


@dev.command("up")
@click.option("--foreground", is_flag=True,
              help="Stay attached; Ctrl-C or SIGTERM stops everything started.")
@_services_opt
@click.option("--controller-port", type=int, default=None,
              help="Kafka KRaft controller port (default: Kafka port + 1).")
@click.option("--timeout", type=float, default=None,
              help="Health-wait seconds per service (default: kafka 90, redis 30, "
                   "worker 120, api 60).")
@_state_dir_option
@click.pass_context
def dev_up_command(ctx: click.Context, foreground: bool, services: str,
                   controller_port: int | None, timeout: float | None,
                   state_dir: str | None) -> None:
    """Start the stack (reusing running services and kept state)."""
    settings = _settings_from(ctx, state_dir)
    names = _services_option(services)
    if foreground:  # SIGTERM during startup also cleans up (the children die with us anyway)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = dev_up(settings, names, controller_port=controller_port,
                        foreground=foreground, timeout=timeout, echo=click.echo)
    except DevstackError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.Abort() from None
    for label, value in (("HTTP", settings.http_url), ("Kafka", settings.kafka_bootstrap),
                         ("Redis", settings.redis_url), ("objects", settings.object_store_url),
                         ("state", StackLayout.of(settings).root)):
        click.echo(f"{label:<8}{value}")
    if foreground:
        click.echo("running in the foreground; Ctrl-C stops everything")
        ctx.exit(run_foreground(settings, result, echo=click.echo))
    else:
        click.echo("running in the background; `influent dev down` stops it")


@dev.command("down")
@_services_opt
@_state_dir_option
@click.pass_context
def dev_down_command(ctx: click.Context, services: str, state_dir: str | None) -> None:
    """Stop the services the pid files name (reverse start order); state is kept."""
    dev_down(_settings_from(ctx, state_dir), _services_option(services), echo=click.echo)


@dev.command("status")
@_state_dir_option
@click.pass_context
def dev_status_command(ctx: click.Context, state_dir: str | None) -> None:
    """Print each service's state; exit code 3 when a managed service is not running."""
    settings = _settings_from(ctx, state_dir)
    all_up = True
    for name, entry in dev_status(settings).items():
        state = str(entry["state"])
        pid = f"pid {entry['pid']}" if "pid" in entry else ""
        health = "healthy" if entry["healthy"] else ("" if state == "stopped" else "not answering")
        all_up &= state != "stopped"
        click.echo(f"{name:<7} {state:<9} {pid:<11} {entry['endpoint']:<28} {health}")
    ctx.exit(0 if all_up else 3)


@dev.command("install")
def dev_install_command() -> None:
    """Provision prerequisites: redis-server (apt-get) and the Kafka jars (mvn).
    Idempotent; what is present is reused."""
    try:
        started = time.monotonic()
        click.echo(f"redis-server  {ensure_redis_installed()}")
        classpath = kafka_classpath()
        click.echo(f"kafka jars    {kafka_home() / 'lib'} ({len(classpath.split(os.pathsep))} jars)")
        archive = _cds_archive_path(_java())
        click.echo(f"class data    {archive if archive.exists() else 'not learned yet'}")
        click.echo(f"ready in {time.monotonic() - started:.1f}s")
    except DevstackError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":  # python -m influent.devstack up|down|status|install
    dev()
