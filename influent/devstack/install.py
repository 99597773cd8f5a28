"""What the local services need on the machine: prerequisites (``java``, ``mvn``, Debian's
``redis-server``), the Kafka broker jars from Maven Central, and the JVM class-data archive that
makes the broker start faster."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from influent.config import PROJECT_ROOT
from influent.devstack.processes import MissingPrerequisite, Service, _pid_alive

#: Apache Kafka release used locally; the cache folder is named after it and it is passed to
#: ``mvn`` as ``-Dkafka.version`` (keep ``infra/kafka/pom.xml``'s default in sync).
KAFKA_VERSION = "3.9.2"
KAFKA_INFRA_DIR = PROJECT_ROOT / "infra" / "kafka"
KAFKA_POM = KAFKA_INFRA_DIR / "pom.xml"
KAFKA_LOG4J = KAFKA_INFRA_DIR / "log4j.properties"

# ---- prerequisites -------------------------------------------------------------------------

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
