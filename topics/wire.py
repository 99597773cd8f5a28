"""Wire formats shared by the agents and the query API.

Arrow batches travel as Arrow IPC stream bytes (buffers table values, Redis snapshots, the
accepted topic). Rejected lines travel as JSON. Keeping both here means producers and consumers
of a topic cannot drift apart.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import orjson
import pyarrow as pa

# the internal write-order columns every buffered row carries, re-exported with the formats
# that carry them (the names are the data model's)
from influent.model import INTERNAL_COLUMNS as INTERNAL_COLUMNS
from influent.model import ORDER_SEQ as ORDER_SEQ
from influent.model import ORDER_TS as ORDER_TS

ROWS_PER_MESSAGE_BITS = 20
# header of an empty writes message older workers sent to make their stream reveal a stranded
# tail; ingest passes over such a record (it may still be in a topic)
NUDGE_HEADER = "influent-nudge"


#: Arrow IPC body compression of every encoded batch: on TSBS cpu rows lz4 makes a batch 2.5x
#: smaller (0.22 instead of 0.54 of the line protocol bytes) for about a microsecond per row to
#: encode and less to decode; each batch is written three times (changelog, accepted, snapshot).
#: Readers need no setting: the IPC reader decompresses what the stream says.
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
PLAIN_IPC_OPTIONS = pa.ipc.IpcWriteOptions()

#: Below this many bytes of Arrow buffers a batch is written uncompressed: lz4 costs a fixed
#: ~0.1 ms per batch (a frame per buffer), more than the parse of a few lines, and saves a few
#: kilobytes at most (a one-row TSBS batch even grows: 3.9 KB compressed, 3.3 KB plain).
COMPRESS_MIN_BYTES = 32 * 1024


def encode_batch(batch: pa.RecordBatch | pa.Table) -> bytes:
    """Arrow IPC stream bytes for one batch or table (lz4-compressed buffers unless small)."""
    sink = pa.BufferOutputStream()
    options = IPC_OPTIONS if batch.nbytes >= COMPRESS_MIN_BYTES else PLAIN_IPC_OPTIONS
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write(batch)
    return sink.getvalue().to_pybytes()


def decode_batches(data: bytes) -> pa.Table:
    """The inverse of :func:`encode_batch`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


@dataclass(frozen=True)
class RejectedLine:
    """One rejected line on ``influent.rejected``: enough to find, fix and resend it."""

    database: str
    line: int
    original: str
    reason: str
    topic: str
    partition: int
    offset: int
    received_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "RejectedLine":
        return cls(**orjson.loads(data))


@dataclass(frozen=True)
class BatchRef:
    """Where an accepted batch came from; travels as headers on ``influent.accepted``."""

    database: str
    table: str
    partition_key: str
    source_topic: str
    source_partition: int
    source_offset: int

    def headers(self) -> dict[str, bytes]:
        return {k: str(v).encode() for k, v in asdict(self).items()}

    @classmethod
    def from_headers(cls, headers: dict[str, bytes]) -> "BatchRef":
        h = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in headers.items()}
        return cls(
            database=h["database"],
            table=h["table"],
            partition_key=h["partition_key"],
            source_topic=h["source_topic"],
            source_partition=int(h["source_partition"]),
            source_offset=int(h["source_offset"]),
        )


def header_dict(headers) -> dict[str, str]:
    """Kafka headers (list of pairs or mapping, bytes values) as a lower-cased str dict."""
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, dict) else headers
    return {k.lower(): (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for k, v in items}


def batch_stats(data: bytes) -> tuple[int, int]:
    """(rows, write timestamp ms) of one buffered Arrow batch."""
    return rows_stats(decode_batches(data))


def rows_stats(rows: pa.RecordBatch | pa.Table) -> tuple[int, int]:
    """:func:`batch_stats` of the rows before they are encoded."""
    ts = rows.column(ORDER_TS)[0].as_py() if rows.num_rows else int(time.time() * 1000)
    return rows.num_rows, ts


def stats_headers(rows: pa.RecordBatch | pa.Table) -> dict[str, bytes]:
    """Headers of an accepted message with its :func:`batch_stats`, so that a reader needing
    only those (the persist agent) does not decode the batch."""
    n, ts = rows_stats(rows)
    return {"rows": str(n).encode(), "written_ms": str(ts).encode()}


def stats_from_headers(headers: dict[str, str], data: bytes) -> tuple[int, int]:
    """An accepted message's :func:`batch_stats`, from its headers when it has them (messages
    of older workers do not: decoded then)."""
    try:
        return int(headers["rows"]), int(headers["written_ms"])
    except (KeyError, ValueError):
        return batch_stats(data)


def now() -> float:
    return time.time()
