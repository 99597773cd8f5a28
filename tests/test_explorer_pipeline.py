"""The pipeline panel's pure parts, and its answer while Kafka cannot be reached (real Redis)."""
from __future__ import annotations

import time

import orjson
import pyarrow as pa
import pytest

from influent.config import Settings
from persist.catalog import Catalog
from query_api.explorer.pipeline import (PipelineReader, lag, persist_event_summary,
                                         snapshot_partition, snapshot_stats)
from topics.wire import encode_batch


def test_lag_counts_the_whole_log_before_a_first_commit():
    assert lag(10, 4) == 6
    assert lag(10, None) == 10
    assert lag(10, -1) == 10
    assert lag(3, 5) == 0  # a committed offset past the end (a recreated topic) is no lag
    assert lag(None, 3) is None


def test_snapshot_fields_name_their_source_partition():
    assert snapshot_partition("3:1200:2026-01-01") == 3
    assert snapshot_partition("12:0:region=eu|2026-01-01") == 12
    assert snapshot_partition("not-a-field") is None


def test_snapshot_stats_reads_rows_and_time_bounds():
    table = pa.table({"host": ["a", "b", "c"],
                      "time": pa.array([30, 10, 20], pa.timestamp("ns"))})
    stats = snapshot_stats(encode_batch(table))
    assert (stats.rows, stats.min_time, stats.max_time) == (3, 10, 30)
    empty = snapshot_stats(encode_batch(table.slice(0, 0)))
    assert (empty.rows, empty.min_time, empty.max_time) == (0, None, None)


def test_persist_event_summary_keeps_the_listed_fields_and_refuses_other_records():
    event = {"database": "db", "table": "cpu", "partition_key": "2026-01-01", "path": "p",
             "rows": 5, "size": 100, "min_time": 1, "max_time": 2, "source_partition": 0,
             "min_offset": 3, "max_offset": 4, "created_at": 1.5, "columns": {"host": "tag"}}
    summary = persist_event_summary(orjson.dumps(event))
    assert summary == {k: v for k, v in event.items() if k != "columns"}
    assert persist_event_summary(b"not json") is None
    assert persist_event_summary(b"[1, 2]") is None


@pytest.mark.integration
async def test_pipeline_answers_without_kafka_and_says_so(redis_url, tmp_path):
    from influent.devstack import free_port

    settings = Settings(state_dir=tmp_path, redis_url=redis_url, partitions=2,
                        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens there
                        topic_prefix=f"nokafka{time.time_ns()}.")
    catalog = Catalog.connect(redis_url, settings.app_id)
    reader = PipelineReader(settings)
    try:
        await catalog.create_database("db")
        await catalog.ensure_columns("db", "cpu", {"host": "tag", "usage": "float", "time": "time"})
        table = pa.table({"host": ["a", "b"], "usage": [1.0, 2.0],
                          "time": pa.array([5, 7], pa.timestamp("ns"))})
        await catalog.put_snapshots([("db", "cpu", "1:0:1970-01-01", encode_batch(table))])
        answer = await reader.status(catalog)
    finally:
        await reader.close()
        await catalog.close()
    assert len(answer["problems"]) == 1 and answer["problems"][0].startswith("kafka: ")
    parts = {p["partition"]: p for p in answer["partitions"]}
    assert parts[1]["buffered_rows"] == 2 and parts[1]["writes_end"] is None
    assert parts[0]["buffered_rows"] == 0
    assert answer["tables"] == [{"db": "db", "table": "cpu", "buffered_rows": 2,
                                 "buffered_bytes": answer["tables"][0]["buffered_bytes"],
                                 "files": 0, "file_rows": 0, "file_bytes": 0,
                                 "min_time": 5, "max_time": 7}]
    assert answer["triggers"] == [] and answer["subscriptions"] == [] and answer["errors"] == []
