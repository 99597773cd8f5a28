"""The query API's own Prometheus metrics (HTTP, writes, query work), kept in one registry that
``/metrics`` renders together with the processing engine's."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from query_api.engine import QueryStats


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("influent_http_requests", "HTTP requests", ["path", "status"],
                                registry=registry)
        self.latency = Histogram("influent_http_request_seconds", "HTTP request latency", ["path"],
                                 registry=registry)
        self.lines_written = Counter("influent_lines_written", "Lines accepted by the write router",
                                     registry=registry)
        self.lines_rejected = Counter("influent_lines_rejected", "Lines rejected by the write router",
                                      registry=registry)
        self.files_read = Counter("influent_query_files_read", "Parquet files opened by queries",
                                  registry=registry)
        self.files_pruned = Counter("influent_query_files_pruned",
                                    "Parquet files skipped by time pruning", registry=registry)
        self.rows_scanned = Counter("influent_query_rows_scanned", "Rows read by queries before dedup",
                                    registry=registry)

    def observe(self, stats: QueryStats) -> None:
        """Add one query's work (files read and pruned, rows scanned) to the counters."""
        self.files_read.inc(stats.files_read)
        self.files_pruned.inc(stats.files_pruned)
        self.rows_scanned.inc(stats.rows_scanned)
