"""Child processes of the dev stack and the tests: spawning in their own process group,
waiting until they answer, stopping the whole group; free ports; the health probes (a Kafka
Metadata request, a Redis ``PING``, an HTTP status)."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import os
import random
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


# ---- errors ------------------------------------------------------------------------------


class DevstackError(RuntimeError):
    """Base class of every dev-stack failure (the CLI prints these without a traceback)."""


class MissingPrerequisite(DevstackError):
    """A program the stack needs (java, mvn, redis-server, ...) is not installed."""


class PortInUse(DevstackError):
    """A port a service needs is already taken by another process."""


class ServiceStartError(DevstackError):
    """A service exited early or did not become healthy in time; the message has its log tail."""


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
