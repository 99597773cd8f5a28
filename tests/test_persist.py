"""Persistence end to end with real Kafka, Redis, a local store and an S3 endpoint (moto):
persist events announce files whose rows equal what was written; crashes at each step of a
persist lose nothing and show no duplicates; the catalog can be rebuilt from the store alone."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from influent.config import Settings
from influent.devstack import free_port, start_redis, stop
from influent.model import ORDER_SEQ, ORDER_TS
from persist.object_store import open_store
from tests.harness import produce, read_topic, rows, running, unique, wait_for, wait_for_count

pytestmark = pytest.mark.integration
BASE = 1_700_000_000_000_000_000


def persist_settings(kafka_bootstrap, redis_url, tmp_path, **kw) -> Settings:
    return Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                    topic_prefix=unique("p") + ".", partitions=2,
                    http_bind=f"127.0.0.1:{free_port()}", default_db="d",
                    persist_max_rows=1000, persist_max_age=3600, tick_interval=1.0, **kw)


def lines(db_rows: int, offset: int = 0, value: float = 1.0) -> bytes:
    """Rows keyed by k = offset + i: overlapping offsets rewrite the same series and times."""
    return "\n".join(f"cpu,host=h{k % 50},dc=d{k % 3} usage={value + i},n={i}i {BASE + k * 1_000_000_000}"
                     for i, k in ((i, offset + i) for i in range(db_rows))).encode()


def download(event: dict, settings: Settings) -> pa.Table:
    store = open_store(settings)
    url = urlparse(event["url"])
    if url.scheme == "file":
        return pq.read_table(url.path)
    return pq.read_table(pa.BufferReader(store.get(event["path"])))


async def events_for(settings: Settings, db: str, count: int, timeout: float = 90) -> list[dict]:
    records = await read_topic(settings, settings.persisted_topic, until_count=count, timeout=timeout)
    return [json.loads(r.value) for r in records if json.loads(r.value)["database"] == db]


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_persist_events_announce_files_with_the_written_rows(kafka_bootstrap, redis_url, s3_endpoint,
                                                             tmp_path, store_kind):
    extra = {}
    if store_kind == "s3":
        extra = dict(object_store=f"s3://{unique('bucket')}", s3_endpoint=s3_endpoint,
                     s3_access_key="testing", s3_secret_key="testing")
    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path, **extra)
    db = unique("persist")
    with running(settings):
        # 2 x 1000 rows per partition, the second message rewrites half the keys of the first;
        # it is sent once the first is persisted (one batch would make them one file)
        asyncio.run(produce(settings, [lines(1000)], db, partition=0))
        asyncio.run(events_for(settings, db, count=1))
        asyncio.run(produce(settings, [lines(1000, offset=500, value=100.0)], db, partition=0))
        asyncio.run(produce(settings, [lines(1000, offset=5000)], db, partition=1))
        events = asyncio.run(events_for(settings, db, count=3))
        assert len({e["path"] for e in events}) >= 3
        for e in events:
            assert e["table"] == "cpu" and e["rows"] > 0 and e["size"] > 0
            assert e["columns"]["host"] == "tag" and e["columns"]["usage"] == "float"
            assert e["path"].startswith(f"{db}/cpu/{e['partition_key']}/")
        events.sort(key=lambda e: (e["source_partition"], e["min_offset"]))
        files = [download(e, settings) for e in events]
        assert [f.num_rows for f in files] == [e["rows"] for e in events]
        got = {}
        for f in files:  # later files win, as at query time
            got.update({(r["host"], r["dc"], r["time"]): r["usage"] for r in f.to_pylist()})
        expected = {}
        for off, value in ((0, 1.0), (500, 100.0), (5000, 1.0)):
            for i in range(1000):
                ts = pa.scalar(BASE + (off + i) * 1_000_000_000, pa.timestamp("ns")).as_py()
                expected[(f"h{(off + i) % 50}", f"d{(off + i) % 3}", ts)] = value + i
        assert got == expected
        # the queries agree: 2500 distinct keys, nothing doubled
        wait_for_count(settings, db, "cpu", 2500)
        meta = pq.read_schema(pa.BufferReader(open_store(settings).get(events[0]["path"]))).metadata
        assert meta[b"influent.database"].decode() == db
        assert pa.types.is_dictionary(files[0].schema.field("host").type)
        # DataFusion opens the files as they are, with the documented columns
        import datafusion
        ctx = datafusion.SessionContext()
        local = tmp_path / "event0.parquet"
        local.write_bytes(open_store(settings).get(events[0]["path"]))
        ctx.register_parquet("persisted", str(local))
        got_df = ctx.sql("SELECT count(*) AS n FROM persisted").to_pydict()
        assert got_df["n"] == [events[0]["rows"]]
        # (plus each row's write order, which queries use and never show)
        assert set(ctx.table("persisted").schema().names) == {"dc", "host", "n", "time", "usage",
                                                              ORDER_TS, ORDER_SEQ}


@pytest.mark.parametrize("failpoint", ["after_object_write", "after_catalog_commit", "before_event"])
def test_crash_during_persist_loses_nothing(kafka_bootstrap, redis_url, tmp_path, failpoint):
    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("fault")
    with running(settings, worker_env={"INFLUENT_FAILPOINT": failpoint}) as run:
        asyncio.run(produce(settings, [lines(1000)], db, partition=0))
        wait_for(lambda: not run.worker.alive(), timeout=60, what=f"the worker to crash at {failpoint}")
        run.restart_worker()
        events = asyncio.run(events_for(settings, db, count=1))
        assert events, "the persist event arrives after the restart"
        paths = {e["path"] for e in events}
        assert len(paths) == 1, paths  # the re-persisted object has the same name
        store_files = [o.path for o in open_store(settings).list(f"{db}/")]
        assert store_files == list(paths)
        wait_for_count(settings, db, "cpu", 1000)
        dup = rows(settings, db, "SELECT host, dc, time, count(*) AS c FROM cpu GROUP BY host, dc, time HAVING count(*) > 1")
        assert dup == []


def test_catalog_rebuild_after_flushall(kafka_bootstrap, tmp_path):
    own_redis = start_redis(tmp_path / "redis", tmp_path / "logs", free_port())
    try:
        redis_url = own_redis.endpoint
        settings = persist_settings(kafka_bootstrap, redis_url, tmp_path)
        db = unique("rebuild")
        with running(settings):
            asyncio.run(produce(settings, [lines(1000)], db, partition=0))
            asyncio.run(events_for(settings, db, count=1))  # two files: the second write
            asyncio.run(produce(settings, [lines(1000, offset=1000)], db, partition=0))
            asyncio.run(events_for(settings, db, count=2))
            query = "SELECT host, count(*) AS n, sum(usage) AS s FROM cpu GROUP BY host ORDER BY host"
            before = wait_for(lambda: rows(settings, db, query), what="rows")
            client = redis.Redis.from_url(redis_url)
            wait_for(lambda: all(client.hlen(k) == 0 for k in client.scan_iter("*:buf")), what="empty buffers")
            before = rows(settings, db, query)
            client.flushall()
            assert rows(settings, db, query) == []
            env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
            out = subprocess.run([sys.executable, "-m", "influent.cli", "catalog", "rebuild"], env=env,
                                 cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                                 check=True).stdout
            assert "restored 2 file records" in out
            assert rows(settings, db, query) == before
    finally:
        stop(own_redis)


def test_clean_shutdown_persists_every_buffer(kafka_bootstrap, redis_url, tmp_path):
    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path).replace(persist_max_rows=10**9)
    db = unique("shutdown")
    with running(settings) as run:
        asyncio.run(produce(settings, [lines(300)], db, partition=0))
        asyncio.run(produce(settings, [lines(200, offset=300)], db, partition=1))
        wait_for_count(settings, db, "cpu", 500)
        run.worker.stop()  # SIGTERM: a clean shutdown
        events = asyncio.run(events_for(settings, db, count=2))
        assert sorted(e["rows"] for e in events) == [200, 300]
        client = redis.Redis.from_url(redis_url)
        assert client.hlen(f"{settings.app_id}:db:{db}:t:cpu:buf") == 0
        assert rows(settings, db, "SELECT count(*) AS n FROM cpu")[0]["n"] == 500


def test_dedup_merges_fields_across_files_and_buffer_and_prunes_by_time(kafka_bootstrap, redis_url, tmp_path):
    """The same key written three times with different fields — twice persisted (two files),
    once buffered — reads as one merged row; a narrow time range opens only overlapping files."""
    import httpx

    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path).replace(persist_max_rows=2)
    db = unique("merge")
    with running(settings):
        day = 86_400_000_000_000
        filler = "\n".join(f"f,host=z v={i} {BASE + 10 * day + i}" for i in range(3))
        # one message at a time, each once the previous one's files are there (a batch of them
        # would be merged into one file per day)
        for message, files in (
                (f"m,host=a x=1 {BASE}\nm,host=a x=0 {BASE + day}\nm,host=b x=5 {BASE}", 1),
                (f"m,host=a y=2i {BASE}\nm,host=a y=0i {BASE + day}\nm,host=b y=6i {BASE}", 3)):
            asyncio.run(produce(settings, [message.encode()], db, partition=0))
            wait_for(lambda: len(asyncio.run(events_for(settings, db, count=files, timeout=5)))
                     >= files, timeout=90, what="the persisted files")
        asyncio.run(produce(settings, [f"m,host=a x=3,z=\"buffered\" {BASE}".encode(),
                                       filler.encode()], db, partition=0))
        # files: day 0 of the 1st message, day 0 of the 2nd, day 1 of both, and `f`
        wait_for(lambda: len(asyncio.run(events_for(settings, db, count=4, timeout=5))) >= 4,
                 timeout=90, what="the persisted files")
        got = wait_for(lambda: rows(settings, db, "SELECT host, x, y, z FROM m WHERE host = 'a' ORDER BY time"))
        assert got[0] == {"host": "a", "x": 3.0, "y": 2, "z": "buffered"}, got
        assert len(got) == 2
        assert len(rows(settings, db, "SELECT * FROM m")) == 3  # (a, t0), (a, t0 + 1 day), (b, t0)
        # `m` has two files for day 0 and one for day 1: a query on day 1 opens only that one
        day2 = pa.scalar(BASE + day, pa.timestamp("ns")).as_py().isoformat()
        resp = httpx.get(f"{settings.http_url}/api/v3/query_sql", params={
            "db": db, "q": f"SELECT * FROM m WHERE time >= '{day2}'"})
        assert resp.status_code == 200 and len(resp.json()) == 1
        assert resp.headers["x-influent-files-pruned"] == "2", resp.headers
        assert resp.headers["x-influent-files-read"] == "1"
        metrics = httpx.get(f"{settings.http_url}/metrics").text
        assert "influent_query_files_pruned_total" in metrics


def test_delete_database_removes_files_buffers_and_stays_deleted(kafka_bootstrap, redis_url, tmp_path):
    import httpx

    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("gone")
    with running(settings) as run:
        asyncio.run(produce(settings, [lines(1000), lines(10, offset=5000)], db, partition=0))
        asyncio.run(events_for(settings, db, count=1))
        wait_for_count(settings, db, "cpu", 1010)
        assert list(open_store(settings).list(f"{db}/"))
        resp = httpx.delete(f"{settings.http_url}/api/v3/configure/database",
                            params={"db": db, "hard_delete_at": "now"})
        assert resp.status_code == 200
        assert httpx.get(f"{settings.http_url}/api/v3/query_sql",
                         params={"db": db, "q": "SELECT 1"}).status_code == 404
        assert list(open_store(settings).list(f"{db}/")) == []
        # a restart replays the changelog: the deleted buffer must not come back
        run.restart_worker()
        asyncio.run(produce(settings, [lines(5, offset=9000)], db, partition=1))
        wait_for(lambda: rows(settings, db, "SELECT count(*) AS n FROM cpu"), what="new writes")
        assert rows(settings, db, "SELECT count(*) AS n FROM cpu")[0]["n"] == 5


def test_delete_table_removes_its_files_and_buffers_and_leaves_the_others(kafka_bootstrap, redis_url,
                                                                          tmp_path):
    import httpx

    settings = persist_settings(kafka_bootstrap, redis_url, tmp_path)
    db = unique("droptable")
    with running(settings) as run:
        asyncio.run(produce(settings, [lines(1000), lines(10, offset=5000),
                                       b"keep,host=a v=1 1700000000000000000"], db, partition=0))
        asyncio.run(events_for(settings, db, count=1))
        wait_for_count(settings, db, "cpu", 1010)
        wait_for_count(settings, db, "keep", 1)
        base = settings.http_url
        assert httpx.delete(f"{base}/api/v3/configure/table",
                            params={"db": db, "table": "nope"}).status_code == 404
        assert httpx.delete(f"{base}/api/v3/configure/table", params={
            "db": db, "table": "cpu", "hard_delete_at": "now"}).status_code == 200
        assert list(open_store(settings).list(f"{db}/cpu/")) == []
        assert httpx.get(f"{base}/api/v3/query_sql",
                         params={"db": db, "q": "SELECT count(*) FROM cpu"}).status_code in (400, 404)
        assert rows(settings, db, "SELECT count(*) AS n FROM keep")[0]["n"] == 1
        # the changelog replays on restart: the deleted buffer stays deleted; new writes start afresh
        run.restart_worker()
        asyncio.run(produce(settings, [b"cpu,host=z usage=\"now a string\" 1700000000000000000"], db,
                            partition=1))
        wait_for_count(settings, db, "cpu", 1)
        assert rows(settings, db, "SELECT host, usage FROM cpu") == [{"host": "z", "usage": "now a string"}]
