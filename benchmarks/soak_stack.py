"""The soak's own stack (the dev-stack code, free ports, a temp dir) and the ways to hurt it:
kill or restart each process with its data kept, add a second worker, take the object store
away, run a worker with a failpoint.

Every process is started from the calling (main) thread with ``die_with_parent``, so nothing
outlives the soak; :meth:`SoakStack.stop` stops what is left.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from influent import devstack
from influent.config import Settings


@dataclass
class SoakStack:
    """Kafka, Redis, one worker (``worker``), the query API and maybe a second worker."""

    work: Path
    settings: Settings
    kafka_ports: tuple[int, int]
    redis_port: int
    kafka: devstack.Service
    redis: devstack.Service
    worker: devstack.Service | None = None
    api: devstack.Service | None = None
    second: devstack.Service | None = None
    #: processes that exited without being asked to (name, time, log tail)
    crashes: list[dict] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def objects(self) -> Path:
        return Path(self.settings.state_dir) / "objects"

    # ---- start and stop -----------------------------------------------------------------
    @classmethod
    def start(cls, work: Path, **overrides) -> "SoakStack":
        logs = work / "logs"
        kafka_port, controller, redis_port, web_port, http_port = devstack.free_ports(5)
        kafka = devstack.launch_kafka(work / "kafka", logs, kafka_port, controller,
                                      die_with_parent=True)
        redis = devstack.launch_redis(work / "redis", logs, redis_port, die_with_parent=True)
        devstack.wait_ready(redis, 60)
        devstack.wait_ready(kafka, 180)
        plugins = work / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            state_dir=work / "influent", kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0", topic_prefix="soak.", partitions=4,
            http_bind=f"127.0.0.1:{http_port}", worker_web_port=web_port, worker_id="worker-1",
            plugin_dir=str(plugins), tick_interval=1.0, log_level="info", **overrides)
        stack = cls(work=work, settings=settings, kafka_ports=(kafka_port, controller),
                    redis_port=redis_port, kafka=kafka, redis=redis)
        stack.worker = stack.launch_worker()
        devstack.wait_ready(stack.worker, 300)
        stack.api = devstack.launch_api(settings, logs, die_with_parent=True)
        devstack.wait_ready(stack.api, 120)
        return stack

    def launch_worker(self, env: dict[str, str] | None = None) -> devstack.Service:
        return devstack.launch_worker(self.settings, self.logs, die_with_parent=True,
                                      extra_env=env)

    def stop(self) -> None:
        for service in (self.api, self.second, self.worker):
            if service is not None:
                devstack.stop(service, timeout=60)
        devstack.stop(self.redis)
        devstack.stop(self.kafka, timeout=60)
        self.store_available()

    # ---- faults -------------------------------------------------------------------------
    def kill_worker(self) -> None:
        _kill(self.worker)

    def restart_worker(self, env: dict[str, str] | None = None, timeout: float = 300) -> None:
        """A new worker process on the same state (after a kill, a crash or a failpoint)."""
        devstack.stop(self.worker, timeout=60)
        self.worker = self.launch_worker(env)
        devstack.wait_ready(self.worker, timeout)

    def wait_worker_exit(self, timeout: float) -> bool:
        """Wait for the worker to end on its own (a failpoint's SIGKILL)."""
        deadline = time.monotonic() + timeout
        while self.worker.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def kill_api(self) -> None:
        _kill(self.api)

    def restart_api(self, timeout: float = 120) -> None:
        devstack.stop(self.api, timeout=30)
        self.api = devstack.launch_api(self.settings, self.logs, die_with_parent=True)
        devstack.wait_ready(self.api, timeout)

    def join_second_worker(self, timeout: float = 300) -> None:
        second = self.settings.replace(worker_id="worker-2",
                                       worker_web_port=devstack.free_port())
        self.second = devstack.launch_worker(second, self.logs, die_with_parent=True,
                                             name="worker2")
        devstack.wait_ready(self.second, timeout)

    def leave_second_worker(self) -> None:
        """A clean leave (SIGTERM: the worker drains its buffers, then the group rebalances)."""
        if self.second is not None:
            devstack.stop(self.second, timeout=120)
            self.second = None

    def stop_kafka(self) -> None:
        devstack.stop(self.kafka, timeout=60)

    def start_kafka(self, timeout: float = 180) -> None:
        port, controller = self.kafka_ports
        self.kafka = devstack.launch_kafka(self.work / "kafka", self.logs, port, controller,
                                           die_with_parent=True)
        devstack.wait_ready(self.kafka, timeout)

    def stop_redis(self) -> None:
        devstack.stop(self.redis, timeout=30)

    def start_redis(self, timeout: float = 60) -> None:
        self.redis = devstack.launch_redis(self.work / "redis", self.logs, self.redis_port,
                                           die_with_parent=True)
        devstack.wait_ready(self.redis, timeout)

    def store_unavailable(self) -> None:
        """Take the local object store away as a lost mount would: its directory is moved
        aside and a plain file stands in its place, so every read and write under it fails."""
        away = self.objects.with_name("objects.unavailable")
        os.replace(self.objects, away)
        self.objects.write_text("the object store is unavailable (soak fault)\n")

    def store_available(self) -> None:
        away = self.objects.with_name("objects.unavailable")
        if away.exists():
            if self.objects.is_file():
                self.objects.unlink()
            elif self.objects.is_dir():  # something recreated it meanwhile: merge it back
                shutil.copytree(self.objects, away, dirs_exist_ok=True)
                shutil.rmtree(self.objects)
            os.replace(away, self.objects)

    def check_crashes(self, now: float) -> list[str]:
        """Restart the worker or API if it exited on its own; record it as a crash."""
        restarted = []
        for name in ("worker", "api"):
            service = getattr(self, name)
            if service is not None and not service.alive():
                self.crashes.append({"service": name, "at": now, "log": service.log_tail(40)})
                (self.restart_worker if name == "worker" else self.restart_api)()
                restarted.append(name)
        return restarted


def _kill(service: devstack.Service | None) -> None:
    """SIGKILL a process group and reap it."""
    if service is None or not service.alive():
        return
    os.killpg(service.pid, signal.SIGKILL)
    if service.process is not None:
        service.process.wait(30)
