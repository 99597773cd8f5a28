"""One typed settings object for every influent process.

Values come from ``INFLUENT_*`` environment variables; the CLI may override any field with
``Settings.from_env(**overrides)``. Keeping every knob in one dataclass means the worker, the
query API, the dev stack and the tests all agree on names and defaults.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    return Path(os.environ.get("INFLUENT_STATE_DIR", PROJECT_ROOT / ".state"))


@dataclass(frozen=True)
class Settings:
    """Configuration shared by all processes; see the README's configuration table."""

    state_dir: Path = field(default_factory=default_state_dir)
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    object_store: str = ""  # "" -> <state_dir>/objects; "file:///path"; "s3://bucket[/prefix]"
    s3_endpoint: str = ""  # e.g. http://127.0.0.1:9000 (MinIO); empty -> AWS
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    http_bind: str = "127.0.0.1:8181"
    topic_prefix: str = "influent."
    partitions: int = 8
    # replicas of every topic the project creates (data topics, changelogs, Faust's internal
    # topics, subscription topics) and the in-sync replicas an acks=all write needs; 1 and 1 for
    # the single local broker, 3 and 2 for a three-broker cluster (docker-compose.yml)
    replication_factor: int = 1
    min_insync_replicas: int = 1
    default_db: str = "default"
    token: str = ""
    store: str = "rocksdb"  # buffer table store: rocksdb | memory
    worker_id: str = "worker-1"
    worker_web_port: int = 6066
    persist_max_rows: int = 500_000
    persist_max_bytes: int = 64 * 1024 * 1024
    persist_max_age: float = 300.0
    tick_interval: float = 5.0
    compact_min_files: int = 8  # L0 (or L1) files of a partition that start a compaction
    compact_target_bytes: int = 128 * 1024 * 1024  # size of a compacted file
    compact_interval: float = 60.0  # seconds between compaction/retention sweeps
    compact_grace: float = 300.0  # seconds a replaced file stays for queries in flight
    # a tombstone applied to every file it covers is removed from the catalog once it is this
    # old (seconds): writes made before it still in flight (consumer lag) would show again
    tombstone_min_age: float = 3600.0
    hard_delete_default: float = 72 * 3600.0  # soft-deleted databases/tables: seconds to keep
    # one ingest batch of a writes partition: at most this many messages and bytes, waiting at
    # most this long for any (docs/ingest.md, chosen by measurement in docs/benchmarks.md)
    ingest_max_rows: int = 20_000
    ingest_max_bytes: int = 16 * 1024 * 1024
    ingest_max_wait_ms: int = 20
    # ingest pauses while this worker holds more bytes (encoded Arrow) buffered and not yet
    # persisted, and the persist agent persists early until it is below (0: no cap)
    ingest_max_buffered_bytes: int = 512 * 1024 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    query_cache_bytes: int = 512 * 1024 * 1024  # decoded buffer snapshots kept by a query API
    query_timeout: float = 60.0  # seconds a query may run (query_api/sql_guard.py)
    query_memory_bytes: int = 1024 * 1024 * 1024  # DataFusion memory pool of one query
    plugin_dir: str = ""
    log_level: str = "info"

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read ``INFLUENT_<FIELD>`` variables, then apply non-None ``overrides``."""
        env = dict(os.environ if env is None else env)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("INFLUENT_" + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(hints[f.name], raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _coerce(hints[name], value) if isinstance(value, str) else value
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The settings as ``INFLUENT_*`` variables, to hand to child processes."""
        return {"INFLUENT_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    # ---- derived values -----------------------------------------------------------------
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def topic_replica_configs(self) -> dict[str, str]:
        """Topic configs every created topic carries: its ``min.insync.replicas``."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    @property
    def writes_topic(self) -> str:
        return self.topic("writes")

    @property
    def accepted_topic(self) -> str:
        return self.topic("accepted")

    @property
    def rejected_topic(self) -> str:
        return self.topic("rejected")

    @property
    def persisted_topic(self) -> str:
        return self.topic("persisted")

    @property
    def ticks_topic(self) -> str:
        return self.topic("ticks")

    @property
    def app_id(self) -> str:
        """Faust app id: names the consumer group and the changelog topics."""
        return self.topic_prefix.rstrip(".") or "influent"

    @property
    def ingest_group(self) -> str:
        """Consumer group showing the ingest positions of the writes topic (lag tools); the
        positions themselves live in the buffers changelog (docs/ingest.md)."""
        return f"{self.app_id}.ingest"

    @property
    def object_store_url(self) -> str:
        if self.object_store:
            return self.object_store
        return (Path(self.state_dir) / "objects").resolve().as_uri()

    @property
    def plugins_path(self) -> str:
        """Folder of processing-engine plugins: INFLUENT_PLUGIN_DIR, else <state dir>/plugins."""
        return self.plugin_dir or str(Path(self.state_dir) / "plugins")

    @property
    def http_host(self) -> str:
        return self.http_bind.rsplit(":", 1)[0]

    @property
    def http_port(self) -> int:
        return int(self.http_bind.rsplit(":", 1)[1])

    @property
    def http_url(self) -> str:
        return f"http://{self.http_bind}"


def _coerce(kind: Any, raw: str) -> Any:
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind is Path:
        return Path(raw)
    return raw
