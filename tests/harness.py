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
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from influent.model import MAX_MESSAGE_BYTES
from influent.config import Settings
from influent.devstack import free_port

ROOT = Path(__file__).resolve().parents[1]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Proc:
    """A child process of the test session with its log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self._log:
            self._log.close()
            self._log = None


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUENT_")}
    env.update(settings.as_env())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(settings: Settings, worker_id: str, web_port: int, timeout: float = 90.0,
                 extra_env: dict[str, str] | None = None) -> Proc:
    """Start ``influent worker`` and wait until Faust reports the worker ready."""
    s = settings.replace(worker_id=worker_id, worker_web_port=web_port)
    log_path = Path(s.state_dir) / f"{worker_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = Proc(worker_id, [sys.executable, "-m", "influent.cli", "worker", "--loglevel", "info"],
                {**_env(s), **(extra_env or {})}, log_path).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = proc.log_text()[offset:]
        if "Ready" in text:
            return proc
        if not proc.alive():
            raise RuntimeError(f"worker {worker_id} exited:\n{text[-4000:]}")
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"worker {worker_id} not ready in {timeout}s:\n{proc.log_text()[-4000:]}")


def start_api(settings: Settings, timeout: float = 60.0) -> Proc:
    log_path = Path(settings.state_dir) / "api.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = Proc("api", [sys.executable, "-m", "influent.cli", "api"], _env(settings), log_path).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{settings.http_url}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if not proc.alive():
            raise RuntimeError(f"api exited:\n{proc.log_text()[-4000:]}")
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"api not healthy in {timeout}s:\n{proc.log_text()[-4000:]}")


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
    """Start the API and one worker (``w1``); stop both on the way out, whatever happens."""
    api = start_api(settings)
    try:
        port = free_port()
        run = Running(settings, start_worker(settings, "w1", port, extra_env=worker_env), api, port)
        try:
            yield run
        finally:
            run.worker.stop()
    finally:
        api.stop()
