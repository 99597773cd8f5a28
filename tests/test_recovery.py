"""Crash and scale-out: a SIGKILLed worker loses no accepted line, whether it restarts or a
second worker takes its partitions over and rebuilds their buffers from the changelog."""
from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import count, produce, running, start_api, start_worker, unique, wait_for, wait_for_count

pytestmark = pytest.mark.integration

MESSAGES = 60
LINES_PER_MESSAGE = 500


def make_settings(kafka_bootstrap, redis_url, tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                    topic_prefix=unique("r") + ".", partitions=4,
                    http_bind=f"127.0.0.1:{free_port()}", default_db="d")


def message(i: int) -> bytes:
    base = 1_700_000_000_000_000_000
    return "\n".join(
        f"m,writer=w{i},n={j % 10} v={i * LINES_PER_MESSAGE + j}i {base + (i * LINES_PER_MESSAGE + j) * 1000}"
        for j in range(LINES_PER_MESSAGE)).encode()


class SustainedWriter(threading.Thread):
    """Produces MESSAGES messages over all partitions, a few per second."""

    def __init__(self, settings: Settings, db: str):
        super().__init__(daemon=True)
        self.settings, self.db, self.sent = settings, db, 0

    def run(self) -> None:
        async def go():
            for i in range(MESSAGES):
                await produce(self.settings, [message(i)], self.db, partition=i % self.settings.partitions)
                self.sent += 1
                await asyncio.sleep(0.05)
        asyncio.run(go())


def test_sigkill_and_restart_loses_nothing(kafka_bootstrap, redis_url, tmp_path):
    settings = make_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("crash")
    with running(settings) as run:
        writer = SustainedWriter(settings, db)
        writer.start()
        wait_for(lambda: count(settings, db, "m") > 0, what="first rows")
        wait_for(lambda: writer.sent >= MESSAGES // 3, what="a third of the stream")
        run.worker.kill()
        writer.join(120)
        run.restart_worker()
        total = MESSAGES * LINES_PER_MESSAGE
        wait_for_count(settings, db, "m", total, timeout=120)


def test_second_worker_takes_over_from_the_changelog(kafka_bootstrap, redis_url, tmp_path):
    settings = make_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("takeover")
    w1 = start_worker(settings, "w1", free_port())
    w2 = start_worker(settings, "w2", free_port())
    api = start_api(settings)
    try:
        writer = SustainedWriter(settings, db)
        writer.start()
        wait_for(lambda: writer.sent >= MESSAGES // 2, timeout=120, what="half the stream")
        # the snapshots in Redis are lost too, just before the kill (so the rebalance that
        # follows surely comes after): only the changelog can bring the rows back
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{settings.app_id}:db:{db}:t:*:buf"):
            client.delete(key)
        w2.kill()
        w2.stop()
        writer.join(120)
        total = MESSAGES * LINES_PER_MESSAGE
        wait_for_count(settings, db, "m", total, timeout=150)
        assert w1.alive()
    finally:
        api.stop()
        for w in (w1, w2):
            w.stop()


def test_a_write_the_stream_never_delivers_is_read_back(kafka_bootstrap, redis_url, tmp_path):
    """Faust can pass over the last record of a partition around a rebalance, and no later
    record reveals the gap: the worker nudges the partition and reads the record back."""
    settings = make_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("stranded")
    with running(settings, worker_env={"INFLUENT_FAILPOINT": "skip_first_write"}) as run:
        asyncio.run(produce(settings, [message(0)], db, partition=1))
        wait_for_count(settings, db, "m", LINES_PER_MESSAGE, timeout=90)
        log = run.worker.log_text()
        assert "nudging it" in log and "were not delivered by the stream" in log
