"""The per-partition mutable buffers: a changelog-backed Faust table keyed by batch.

Faust sends the whole value to the changelog on every ``table[key] = value`` (its changelog
records values, not changes), so a buffer is never one growing value: each applied write is its
own entry, keyed
``<db>␟<table>␟<partition key>␟<source partition>:<offset>``, holding that write's Arrow IPC
batch. A write therefore costs O(rows written). The table is co-partitioned with the writes topic:
the entry lives in the changelog partition of the message that produced it, so the worker that
owns writes partition p owns exactly the buffers of partition p.
"""
from __future__ import annotations

from dataclasses import dataclass

import faust

from influent.model import KEY_SEPARATOR as SEP
from topics.wire import BatchRef

#: Key prefix of a partition's read position (the next writes offset to ingest), kept beside the
#: partition's buffers so both reach the changelog in order (see docs/ingest.md).
POSITION_PREFIX = b"\x00position" + SEP.encode()


def position_key(partition: int) -> bytes:
    return POSITION_PREFIX + str(partition).encode()


def is_position_key(raw: bytes | str) -> bool:
    return (raw.encode() if isinstance(raw, str) else raw).startswith(POSITION_PREFIX)


@dataclass(frozen=True)
class BufferKey:
    database: str
    table: str
    partition_key: str
    batch: str  # "<source partition>:<offset, zero padded>" (sorts in write order)

    @classmethod
    def for_batch(cls, ref: BatchRef) -> "BufferKey":
        return cls(ref.database, ref.table, ref.partition_key,
                   f"{ref.source_partition}:{ref.source_offset:020d}")

    @classmethod
    def of(cls, database: str, table: str, partition_key: str, source_partition: int,
           offset: int) -> "BufferKey":
        return cls(database, table, partition_key, f"{source_partition}:{offset:020d}")

    @property
    def source_partition(self) -> int:
        return int(self.batch.split(":")[0])

    @property
    def offset(self) -> int:
        return int(self.batch.split(":")[1])

    @property
    def snapshot_field(self) -> str:
        """Field of this batch in the table's Redis snapshot hash."""
        return f"{self.batch}:{self.partition_key}"

    def encode(self) -> bytes:
        return SEP.join((self.database, self.table, self.partition_key, self.batch)).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> "BufferKey":
        text = raw.decode() if isinstance(raw, bytes) else raw
        db, table, pk, batch = text.split(SEP)
        return cls(db, table, pk, batch)


def buffers_table(app: faust.App, partitions: int,
                  topic_configs: dict[str, str] | None = None) -> faust.Table:
    """Declare the buffers table: raw bytes in and out, one partition per writes partition;
    ``topic_configs`` go to its changelog topic (its ``min.insync.replicas``)."""
    return app.Table(
        "buffers",
        default=None,
        partitions=partitions,
        extra_topic_configs=topic_configs or {},
        key_type=bytes,  # bytes -> Faust's "raw" serializer for the changelog
        value_type=bytes,
        help="Buffered Arrow batches not yet persisted, one entry per applied write.",
    )
