"""No file-count ceiling: a query over 2 000 small Parquet files (real Redis catalog, local
object store) answers completely, and a narrow time range opens only the files it needs."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from persist.catalog import Catalog
from persist.object_store import LocalStore
from persist.parquet_files import ParquetFileMeta, file_id, object_path
from query_api.engine import QueryEngine, QueryStats

pytestmark = pytest.mark.integration
FILES = 2000
BASE = 1_700_000_000_000_000_000
SEC = 1_000_000_000


async def write_files(catalog: Catalog, store: LocalStore, db: str) -> None:
    """2 000 two-row files (already sorted and unique, so written without persist's dedup)."""
    records = {}
    for i in range(FILES):
        times = [BASE + (2 * i) * SEC, BASE + (2 * i + 1) * SEC]
        batch = pa.table({"host": ["a", "b"], "time": pa.array(times, pa.timestamp("ns")),
                          "v": [float(i), 1.0]})
        fid = file_id(0, i)
        path = object_path(db, "cpu", "2023-11-14", fid)
        full = Path(store.local_path(path))
        full.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(batch, full)
        done = ParquetFileMeta(db, "cpu", "2023-11-14", path, fid, full.stat().st_size, 2,
                               times[0], times[1], "t", 0, i, i, i, i,
                               columns={"host": "tag", "v": "float", "time": "time"},
                               created_at=time.time())
        records[done.path] = done.to_json()
    await catalog.ensure_columns(db, "cpu", {"host": "tag", "v": "float"})
    await catalog.redis.hset(catalog.k_files(db, "cpu"), mapping=records)


def test_query_over_two_thousand_files(redis_url, tmp_path):
    async def run() -> None:
        catalog = Catalog.connect(redis_url, f"many{uuid.uuid4().hex[:8]}")
        store = LocalStore(tmp_path / "objects")
        db = "many"
        try:
            await write_files(catalog, store, db)
            engine = QueryEngine(catalog, store, 64 << 20)
            stats = QueryStats()
            got = await engine.sql(db, "SELECT count(*) AS n, sum(v) AS s FROM cpu", stats=stats)
            assert got.to_pylist() == [{"n": 2 * FILES, "s": float(sum(range(FILES)) + FILES)}]
            assert stats.files_read == FILES
            narrow = QueryStats()
            lo, hi = (pa.scalar(t, pa.timestamp("ns")).as_py().isoformat() + "Z"
                      for t in (BASE + 100 * SEC, BASE + 110 * SEC))
            got = await engine.sql(db, f"SELECT count(*) AS n FROM cpu WHERE time >= '{lo}' "
                                       f"AND time < '{hi}'", stats=narrow)
            assert got.to_pylist() == [{"n": 10}]
            assert narrow.files_read <= 6 and narrow.files_pruned >= FILES - 6
            listed = await engine.sql(db, "SELECT count(*) AS n FROM system.parquet_files")
            assert listed.to_pylist() == [{"n": FILES}]
        finally:
            await catalog.close()

    asyncio.run(run())
