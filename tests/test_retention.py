"""Retention periods end to end (real Kafka, Redis, object store): InfluxDB 3's REST shapes and
the CLI; rows older than the period vanish from queries at once (buffers included), the sweep
removes or trims their files, newer rows stay."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port
from persist.object_store import open_store
from persist.parquet_files import ParquetFileMeta
from tests.harness import produce, rows, running, unique, wait_for

pytestmark = pytest.mark.integration
MIN = 60 * 1_000_000_000


def count(settings: Settings, db: str, table: str) -> int:
    return rows(settings, db, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def cli(settings: Settings, *args: str) -> str:
    env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "influent.cli", *args], env=env,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          check=True).stdout


def test_retention_hides_old_rows_at_once_and_the_sweep_removes_them(kafka_bootstrap, redis_url,
                                                                     tmp_path):
    settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                        topic_prefix=unique("r") + ".", partitions=2,
                        http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                        persist_max_rows=100, persist_max_age=3600, tick_interval=1.0,
                        compact_interval=1.0, compact_grace=1.0)
    db = unique("retention")
    client = redis.Redis.from_url(redis_url)
    url = settings.http_url
    with running(settings):
        assert httpx.post(f"{url}/api/v3/configure/database",
                          json={"db": db, "retention_period": "bogus"}).status_code == 400
        assert httpx.post(f"{url}/api/v3/configure/database",  # one partition per year
                          json={"db": db, "partition_template": {"time_format": "%Y"}}
                          ).status_code == 200
        now = time.time_ns()
        # disk: 100 rows, 2 h down to 1 min old, in one file; cpu: 4 rows that stay buffered
        disk = "\n".join(f"disk,host=a used={i}i {now - int((120 - i * 1.2) * MIN)}"
                         for i in range(100))
        cpu = "\n".join(f"cpu,host=h{i} v={i} {now - t * MIN}" for i, t in enumerate((180, 90, 10, 1)))
        asyncio.run(produce(settings, [disk.encode(), cpu.encode()], db, partition=0))
        files_key = f"{settings.app_id}:db:{db}:t:disk:files"
        wait_for(lambda: client.hlen(files_key) == 1, what="the disk file")
        wait_for(lambda: count(settings, db, "cpu") == 4, what="the buffered rows")

        put = httpx.put(f"{url}/api/v3/configure/database", json={"db": db, "retention_period": "1h"})
        assert put.status_code == 204, put.text
        assert count(settings, db, "cpu") == 2  # buffered rows: invisible at once
        visible = count(settings, db, "disk")
        assert 45 <= visible <= 52  # rows of the last hour
        cutoff = time.time_ns() - 60 * MIN

        def trimmed() -> bool:
            metas = [ParquetFileMeta.from_json(v) for v in client.hgetall(files_key).values()]
            paths = {o.path for o in open_store(settings).list(f"{db}/disk/")}
            return (len(metas) == 1 and metas[0].min_time >= cutoff - MIN
                    and paths == {metas[0].path})
        wait_for(trimmed, timeout=60, what="the disk file trimmed by the sweep")
        assert abs(count(settings, db, "disk") - visible) <= 2  # newer rows of the partition stay

        # per table, and the CLI
        assert httpx.post(f"{url}/api/v3/configure/table/retention_period",
                          params={"db": db, "table": "cpu", "duration": "5m"}).status_code == 204
        assert count(settings, db, "cpu") == 1
        assert "retention of" in cli(settings, "retention", "clear", db, "--table", "cpu")
        assert count(settings, db, "cpu") == 2
        assert f"{db}\t1h" in cli(settings, "retention", "show")
        assert httpx.delete(f"{url}/api/v3/configure/database/retention_period",
                            params={"db": db}).status_code == 204
        assert count(settings, db, "cpu") == 4  # buffered rows were only hidden
        assert "2h" in cli(settings, "retention", "set", db, "2h")
        assert count(settings, db, "cpu") == 3
        assert httpx.delete(f"{url}/api/v3/configure/database/retention_period",
                            params={"db": "nope"}).status_code == 404
