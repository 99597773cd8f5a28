"""Overload: above the buffered-bytes cap ingest pauses and the persist agent persists early,
until the worker is below it again; every row still arrives, exactly once (real Kafka, Redis,
object store, a worker process)."""
from __future__ import annotations

import asyncio
import re

import pytest

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import count, produce, running, unique, wait_for, wait_for_count

pytestmark = pytest.mark.integration

MESSAGES = 40
LINES = 400
CAP = 16 * 1024


def message(i: int) -> bytes:
    base = 1_700_000_000_000_000_000
    return "\n".join(f"m,writer=w{i},n={j % 10} v={i * LINES + j}i {base + (i * LINES + j) * 1000}"
                     for j in range(LINES)).encode()


def test_ingest_pauses_above_the_cap_until_persisted_and_loses_nothing(kafka_bootstrap, redis_url,
                                                                       tmp_path):
    # thresholds that never trigger on their own: only the cap makes the worker persist
    settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                        topic_prefix=unique("o") + ".", partitions=2,
                        http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                        persist_max_rows=10**9, persist_max_bytes=2**40, persist_max_age=10**6,
                        ingest_max_rows=3, ingest_max_buffered_bytes=CAP)
    db = unique("over")
    with running(settings) as run:
        asyncio.run(produce(settings, [message(i) for i in range(MESSAGES)], db))
        wait_for_count(settings, db, "m", MESSAGES * LINES, timeout=240)
        wait_for(lambda: "ingest resumed" in run.worker.log_text(), timeout=60,
                 what="the last pause to end")
        log = run.worker.log_text()
        assert count(settings, db, "m") == MESSAGES * LINES  # nothing lost, nothing twice
    paused = [int(n) for n in re.findall(r"ingest paused: (\d+) bytes", log)]
    assert paused and all(n > CAP for n in paused)
    assert re.search(r"persisted .* rows \(pressure\)", log)
