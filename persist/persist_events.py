"""Persist events on ``influent.persisted``: the promise to subscribers that a new Parquet file
is registered in the catalog and readable at ``url``. JSON, keyed by ``<database>/<table>``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from persist.parquet_files import ParquetFileMeta


@dataclass(frozen=True)
class PersistEvent:
    database: str
    table: str
    partition_key: str
    object_store: str  # store root URL, e.g. s3://bucket or file:///var/lib/influent/objects
    path: str  # object path inside the store
    url: str  # full object URL
    size: int
    rows: int
    min_time: int
    max_time: int
    columns: dict[str, str]
    source_topic: str
    source_partition: int
    min_offset: int
    max_offset: int
    file_id: str
    created_at: float
    kind: str = "persisted"  # compaction sends "compacted" events (agents/compaction.py)

    @classmethod
    def from_meta(cls, meta: ParquetFileMeta, url: str, store_url: str) -> "PersistEvent":
        return cls(database=meta.database, table=meta.table, partition_key=meta.partition_key,
                   object_store=store_url, path=meta.path, url=url, size=meta.size,
                   rows=meta.rows, min_time=meta.min_time, max_time=meta.max_time,
                   columns=dict(meta.columns), source_topic=meta.source_topic,
                   source_partition=meta.source_partition, min_offset=meta.min_offset,
                   max_offset=meta.max_offset, file_id=meta.file_id, created_at=meta.created_at)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "PersistEvent":
        return cls(**json.loads(data))
