"""Test harness: real worker and API processes, and small real clients (no mocks).

Workers and the API run as subprocesses exactly as ``influent worker`` / ``influent api`` run in
production, so tests can SIGKILL them.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from influent.model import MAX_MESSAGE_BYTES
from influent.config import Settings
from influent import devstack
from influent.devstack import free_port

ROOT = Path(__file__).resolve().parents[1]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Proc:
    """A worker or API process of the test session (started by :mod:`influent.devstack`, the
    same start-up as ``influent dev``), with its log file."""

    service: devstack.Service

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def popen(self) -> subprocess.Popen:
        return self.service.process

    @property
    def log_path(self) -> Path:
        return self.service.log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.service.alive()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.service.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        devstack.stop(self.service, timeout)


def _ready_in_log(service: devstack.Service) -> bool:
    """Faust logged ``Ready`` in this run's part of the log (the worker is assigned and running)."""
    with open(service.log_path, "rb") as fh:
        fh.seek(service.log_offset)
        return b"Ready" in fh.read()


def start_worker(settings: Settings, worker_id: str, web_port: int, timeout: float = 90.0,
                 extra_env: dict[str, str] | None = None) -> Proc:
    """Start ``influent worker`` and wait until Faust reports the worker ready."""
    s = settings.replace(worker_id=worker_id, worker_web_port=web_port)
    service = devstack.launch_worker(s, Path(s.state_dir), name=worker_id,
                                     args=["--loglevel", "info"], extra_env=extra_env)
    service.check = lambda: _ready_in_log(service)
    return Proc(devstack.wait_ready(service, timeout))


def start_api(settings: Settings, timeout: float = 60.0) -> Proc:
    return Proc(devstack.start_api(settings, Path(settings.state_dir), timeout))


async def produce(settings: Settings, messages: list[bytes], db: str, partition: int | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        hdrs = [("db", db.encode())] + (headers or [])
        futures = [await producer.send(settings.writes_topic, m, headers=hdrs,
                                       partition=None if partition is None else partition)
                   for m in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str, until_count: int | None = None,
                     timeout: float = 30.0) -> list:
    """Read a whole topic from the start (all partitions) until ``until_count`` records or idle."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = []
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
            if until_count is not None and len(records) >= until_count:
                break
            if until_count is None and not batch:
                break
        return records
    finally:
        await consumer.stop()


def sql(settings: Settings, db: str, q: str, fmt: str = "json") -> httpx.Response:
    return httpx.get(f"{settings.http_url}/api/v3/query_sql", params={"db": db, "q": q, "format": fmt},
                     timeout=60)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def wait_for_count(settings: Settings, db: str, table: str, expected: int,
                   timeout: float = 30.0) -> None:
    """Wait until ``table`` holds exactly ``expected`` rows; a timeout names the last count."""
    seen: list[int] = []

    def reached() -> bool:
        seen.append(count(settings, db, table))
        return seen[-1] == expected

    try:
        wait_for(reached, timeout=timeout, what=f"{expected} rows in {db}.{table}")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (last count: {seen[-1] if seen else None})") from None


def rows(settings: Settings, db: str, q: str) -> list[dict]:
    resp = sql(settings, db, q)
    if resp.status_code == 404:
        return []
    assert resp.status_code == 200, resp.text
    return json.loads(resp.content)


def count(settings: Settings, db: str, table: str) -> int:
    """Rows of ``table`` visible to queries; 0 while the database or table does not exist yet."""
    resp = sql(settings, db, f'SELECT count(*) AS n FROM "{table}"')
    if resp.status_code in (400, 404):
        return 0
    assert resp.status_code == 200, resp.text
    return json.loads(resp.content)[0]["n"]


@dataclass
class Running:
    """A worker and an API on one settings, for the duration of a ``with running(...)``."""

    settings: Settings
    worker: Proc
    api: Proc
    web_port: int

    def restart_worker(self, extra_env: dict[str, str] | None = None) -> Proc:
        """Stop the worker (SIGTERM, or reap it if it died) and start it again, same state."""
        self.worker.stop()
        self.worker = start_worker(self.settings, "w1", self.web_port, extra_env=extra_env)
        return self.worker


@contextlib.contextmanager
def running(settings: Settings, worker_env: dict[str, str] | None = None):
    """Start the API and one worker (``w1``); stop both on the way out, whatever happens —
    including the ones a test put in their place (``run.api = start_api(...)``)."""
    api = start_api(settings)
    run: Running | None = None
    try:
        port = free_port()
        run = Running(settings, start_worker(settings, "w1", port, extra_env=worker_env), api, port)
        try:
            yield run
        finally:
            run.worker.stop()
    finally:
        api.stop()
        if run is not None and run.api is not api:
            run.api.stop()


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of an ``influent`` CLI child: this process's, with ``settings`` as the
    only ``INFLUENT_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUENT_")}
    env.update(settings.as_env())
    return env
