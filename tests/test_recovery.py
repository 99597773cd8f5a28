"""Crash and scale-out: a SIGKILLed worker loses no accepted line, whether it restarts or a
second worker takes its partitions over and rebuilds their buffers from the changelog."""
from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import count, produce, rows, running, start_api, start_worker, unique, wait_for, wait_for_count

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


def test_a_crash_between_the_buffers_and_the_position_replays_the_batch(kafka_bootstrap, redis_url,
                                                                        tmp_path):
    """The worker dies after a batch's entries, snapshots and accepted messages went out but
    before its position did: the restarted worker reads the batch again from the old position,
    and the replay yields the same rows, once."""
    settings = make_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("position")
    with running(settings, worker_env={"INFLUENT_FAILPOINT": "ingest_before_position"}) as run:
        asyncio.run(produce(settings, [message(i) for i in range(3)], db, partition=1))
        wait_for(lambda: not run.worker.alive(), timeout=90, what="the worker to crash")
        run.restart_worker()
        wait_for_count(settings, db, "m", 3 * LINES_PER_MESSAGE, timeout=90)
        dup = rows(settings, db, "SELECT writer, n, time, count(*) AS c FROM m "
                                 "GROUP BY writer, n, time HAVING count(*) > 1")
        assert dup == []
