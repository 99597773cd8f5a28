"""When a buffer becomes a Parquet file: the persist thresholds (pure, no Kafka, no Redis).

A buffer — (database, table, partition key) of one source partition — is persisted when it
passes the row or the byte threshold, or when its oldest batch is older than the maximum age
(``INFLUENT_PERSIST_MAX_ROWS``, ``_MAX_BYTES``, ``_MAX_AGE``). To change a threshold rule, this
is the module; the persist agent (``agents/persist.py``) only asks :meth:`PersistPolicy.due`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from influent.config import Settings


@dataclass
class PendingBuffer:
    """What is buffered for one (database, table, partition key) of one source partition.

    Totals are kept as entries come and go, so checking a buffer on every event costs O(1)
    however many batches it holds."""

    entries: dict[bytes, tuple[int, int, int]] = field(default_factory=dict)  # key -> (bytes, rows, written ms)
    rows: int = 0
    bytes: int = 0
    oldest_ms: int = 0

    def add(self, key: bytes, size: int, rows: int, written_ms: int) -> None:
        if key in self.entries:
            return
        self.entries[key] = (size, rows, written_ms)
        self.rows += rows
        self.bytes += size
        self.oldest_ms = written_ms if not self.oldest_ms else min(self.oldest_ms, written_ms)

    def remove(self, key: bytes) -> None:
        size, rows, _ = self.entries.pop(key)
        self.rows -= rows
        self.bytes -= size
        self.oldest_ms = min((w for _, _, w in self.entries.values()), default=0)


@dataclass(frozen=True)
class PersistPolicy:
    max_rows: int
    max_bytes: int
    max_age_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PersistPolicy:
        return cls(settings.persist_max_rows, settings.persist_max_bytes, settings.persist_max_age)

    def due(self, buf: PendingBuffer, now_ms: int) -> str | None:
        """Why this buffer must be persisted now (``rows``, ``bytes``, ``age``), or None."""
        if not buf.entries:
            return None
        if buf.rows >= self.max_rows:
            return "rows"
        if buf.bytes >= self.max_bytes:
            return "bytes"
        if now_ms - buf.oldest_ms >= self.max_age_s * 1000:
            return "age"
        return None
