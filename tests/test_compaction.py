"""Compaction end to end (real Kafka, Redis, object store): many small persisted files of a
partition become a few larger ones with the same answers, a ``compacted`` event names inputs
and outputs, replaced objects leave the store after the grace period, and a SIGKILL at each step
loses nothing, duplicates nothing and leaves no object behind."""
from __future__ import annotations

import asyncio
import json

import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port
from persist.object_store import open_store
from persist.parquet_files import ParquetFileMeta
from tests.harness import produce, read_topic, rows, running, unique, wait_for

pytestmark = pytest.mark.integration
BASE = 1_700_000_000_000_000_000
SEC = 1_000_000_000
SUMMARY = "SELECT host, count(*) AS n, sum(v) AS s, max(w) AS w FROM cpu GROUP BY host ORDER BY host"


def compact_settings(kafka_bootstrap, redis_url, tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                    topic_prefix=unique("c") + ".", partitions=2,
                    http_bind=f"127.0.0.1:{free_port()}", default_db="d", persist_max_rows=20,
                    persist_max_age=3600, tick_interval=1.0, compact_min_files=4,
                    compact_interval=1.0, compact_grace=1.0,
                    ingest_max_rows=1)  # one message per ingest batch: each message one file


def messages(n: int) -> list[bytes]:
    """``n`` messages of 20 rows; every other message rewrites keys of the one before it."""
    out = []
    for m in range(n):
        first = (m // 2) * 15
        out.append("\n".join(f"cpu,host=h{k % 4} v={m * 100 + k},w={m}i {BASE + k * SEC}"
                             for k in range(first, first + 20)).encode())
    return out


def expected_summary(n: int) -> list[dict]:
    """What SUMMARY answers after ``messages(n)``: per key the last message's values win."""
    last: dict[int, int] = {}
    for m in range(n):
        first = (m // 2) * 15
        for k in range(first, first + 20):
            last[k] = m
    out = []
    for h in range(4):
        keys = [k for k in last if k % 4 == h]
        out.append({"host": f"h{h}", "n": len(keys), "s": float(sum(last[k] * 100 + k for k in keys)),
                    "w": max(last[k] for k in keys)})
    return out


def catalog_files(client: redis.Redis, settings: Settings, db: str) -> list[ParquetFileMeta]:
    raw = client.hgetall(f"{settings.app_id}:db:{db}:t:cpu:files")
    return [ParquetFileMeta.from_json(v) for v in raw.values()]


def stored(settings: Settings, db: str) -> set[str]:
    return {o.path for o in open_store(settings).list(f"{db}/")}


def settled(client, settings, db, most: int) -> bool:
    """Compacted (fewer than ``compact_min_files`` files left at L0, at most ``most`` in all),
    and the store holds exactly the catalog's files."""
    files = catalog_files(client, settings, db)
    young = [f for f in files if f.level == 0]
    return (0 < len(files) <= most and any(f.level > 0 for f in files)
            and len(young) < settings.compact_min_files
            and stored(settings, db) == {f.path for f in files}
            and client.zcard(f"{settings.app_id}:gc") == 0)


def test_compaction_merges_files_keeps_answers_and_removes_inputs(kafka_bootstrap, redis_url,
                                                                   tmp_path):
    settings = compact_settings(kafka_bootstrap, redis_url, tmp_path).replace(
        compact_interval=3600.0)  # only persist events drive it here
    db = unique("compact")
    client = redis.Redis.from_url(redis_url)
    expected = expected_summary(12)
    with running(settings):
        asyncio.run(produce(settings, messages(12), db, partition=0))
        wait_for(lambda: settled(client, settings, db, 4), timeout=60, what="compacted files")
        assert rows(settings, db, SUMMARY) == expected
        events = [json.loads(r.value) for r in asyncio.run(read_topic(settings, settings.persisted_topic))]
        compacted = [e for e in events if e.get("kind") == "compacted" and e["database"] == db]
        persisted = {e["path"] for e in events if e.get("kind", "persisted") == "persisted"
                     and e["database"] == db}
        assert compacted and len(persisted) == 12
        replaced = {p for e in compacted for p in e["inputs"]}
        current = catalog_files(client, settings, db)
        young = {f.path for f in current if f.level == 0}  # persisted after the last merge
        assert persisted <= replaced | young and not replaced & young
        assert {f.path for f in current} - young <= {
            o["path"] for e in compacted for o in e["outputs"]}
        levels = rows(settings, db, "SELECT level, count(*) AS n FROM system.parquet_files "
                                    "WHERE table_name = 'cpu' GROUP BY level")
        assert any(r["level"] > 0 for r in levels)
        history = rows(settings, db, "SELECT action, input_files, output_files, status "
                                     "FROM system.compaction_events")
        assert any(h["action"] == "merge" and h["status"] == "done" for h in history)


@pytest.mark.parametrize("failpoint", ["compact_after_outputs", "compact_after_swap",
                                       "compact_before_delete"])
def test_sigkill_during_compaction_loses_nothing(kafka_bootstrap, redis_url, tmp_path, failpoint):
    settings = compact_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("ckill")
    client = redis.Redis.from_url(redis_url)
    expected = expected_summary(8)
    with running(settings, worker_env={"INFLUENT_FAILPOINT": failpoint}) as run:
        asyncio.run(produce(settings, messages(8), db, partition=0))
        wait_for(lambda: not run.worker.alive(), timeout=60, what=f"the worker to die at {failpoint}")
        run.restart_worker()
        wait_for(lambda: settled(client, settings, db, 4), timeout=60, what="settled files")
        assert rows(settings, db, SUMMARY) == expected
        dup = rows(settings, db, "SELECT host, time, count(*) AS c FROM cpu GROUP BY host, time "
                                 "HAVING count(*) > 1")
        assert dup == []
        assert client.scard(f"{settings.app_id}:gc_claimed") == 0
