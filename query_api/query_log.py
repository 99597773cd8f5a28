"""Recent queries of this API process, for ``system.queries`` (kept in memory, as InfluxDB 3
keeps its query log: each API replica shows what it ran)."""
from __future__ import annotations


import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

KEPT = 1000


@dataclass(frozen=True)
class QueryRecord:
    id: str
    issue_time_ns: int
    database: str
    query_type: str  # "sql" or "influxql"
    query_text: str
    duration_ms: float
    rows: int
    success: bool
    error: str


class QueryLog:
    def __init__(self, kept: int = KEPT):
        self.records: deque[QueryRecord] = deque(maxlen=kept)

    def record(self, database: str, query_type: str, text: str, started: float, rows: int,
               error: str | None = None) -> None:
        self.records.append(QueryRecord(uuid.uuid4().hex, int(started * 1e9), database or "",
                                        query_type, text, (time.time() - started) * 1000, rows,
                                        error is None, error or ""))

    def counting(self, database: str, query_type: str, text: str, started: float,
                 batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass streamed batches through and record the query once they are all sent."""
        rows = 0
        try:
            for batch in batches:
                rows += batch.num_rows
                yield batch
        except Exception as exc:
            self.record(database, query_type, text, started, rows, str(exc))
            raise
        self.record(database, query_type, text, started, rows)

    def table(self, database: str) -> pa.Table:
        mine = [r for r in self.records if r.database == database]
        return pa.table({
            "id": pa.array([r.id for r in mine], pa.string()),
            "issue_time": pa.array([r.issue_time_ns for r in mine], pa.timestamp("ns")),
            "query_type": pa.array([r.query_type for r in mine], pa.string()),
            "query_text": pa.array([r.query_text for r in mine], pa.string()),
            "duration_ms": pa.array([r.duration_ms for r in mine], pa.float64()),
            "rows": pa.array([r.rows for r in mine], pa.int64()),
            "success": pa.array([r.success for r in mine], pa.bool_()),
            "error": pa.array([r.error for r in mine], pa.string()),
        })



