"""One batch of writes messages (of one source partition) -> buffer entries and rejected lines.

Each message becomes a :class:`~persist.admission.WriteRequest` with its own default time (the
message's timestamp, for lines without one), and the whole batch goes through the write
admission in one call (``admit(join=True)``): messages of one database, precision and origin are
parsed in one pass and checked against the (cached) catalog once per table. Each table is then
split by partition key, so the fixed costs of a parse, a schema check and an Arrow encode are
paid per group, not per message. Which message and line a row came from is recovered with
vectorised look-ups on the joined text's line numbers, so the write order (offset, line) — and
with it last-write-wins — is the same as when messages were handled one at a time, and every
rejected line still names its message (topic, partition, offset) and its line within that
message.

Replays yield the same rows: rows at or below a buffer's watermark (already in a file) and rows
of a deleted database or table are dropped here, row by row in Arrow.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka.structs import ConsumerRecord

from agents.catalog_cache import CatalogCache
from persist.admission import Admission, WriteRequest, admit
from persist.partitioning import split_rows
from topics.line_protocol import LineError, ParsedTable
from topics.wire import NUDGE_HEADER, ORDER_SEQ, ORDER_TS, ROWS_PER_MESSAGE_BITS, header_dict

#: decoded headers by their raw form: the messages of one producer carry the same few headers,
#: so each distinct set is decoded once (the dicts are shared: read only)
_HEADERS: dict[tuple, dict[str, str]] = {}


def headers_of(raw) -> dict[str, str]:
    key = tuple(raw) if raw else ()
    found = _HEADERS.get(key)
    if found is None:
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
        found = _HEADERS[key] = header_dict(raw)
    return found


class WriteMessage(NamedTuple):
    """The parts of a writes record the ingest step needs (decoupled from client types); a
    named tuple because one is made per Kafka record, at a fifth of a frozen dataclass's cost."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: dict[str, str]
    value: bytes

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> "WriteMessage":
        return cls(record.topic, record.partition, record.offset, record.timestamp,
                   headers_of(record.headers), record.value or b"")

    def request(self, default_db: str, max_body_bytes: int) -> WriteRequest:
        """The message as a write for the admission. It is never refused for its own size (the
        broker bounds it); what gzip inflates it to is bounded by ``max_body_bytes``."""
        h = self.headers
        return WriteRequest(
            self.value, h.get("db") or default_db, h.get("precision") or "ns",
            h.get("content-encoding"), self.timestamp_ms * 1_000_000,
            max(max_body_bytes, len(self.value)), body_format="sniff",
            content_type=h.get("content-type"), precision_given="precision" in h,
            origin=h.get("origin"))


@dataclass(frozen=True)
class Rejection:
    """A rejected line and the message it came from."""

    database: str
    error: LineError  # line numbered within its message
    message: WriteMessage


@dataclass(frozen=True)
class BufferEntry:
    """Rows for one buffer (database, table, partition key) of one source partition; ``offset``
    is the last source offset of the messages it was made from (its key and watermark)."""

    database: str
    table: str
    partition_key: str
    offset: int
    origin: str | None
    rows: pa.RecordBatch | pa.Table
    partition: int = -1  # the source partition (-1: not given)


@dataclass
class BatchOutcome:
    entries: list[BufferEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(e.rows.num_rows for e in self.entries)

    def of_partition(self, partition: int) -> "BatchOutcome":
        return BatchOutcome([e for e in self.entries if e.partition == partition],
                            [r for r in self.rejected if r.message.partition == partition])


def whole_message_error(body: bytes, reason: str) -> list[LineError]:
    """Reject every non-blank, non-comment line of a message with one reason."""
    errors = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        if text.strip() and not text.lstrip().startswith("#"):
            errors.append(LineError(line=number, original=text, reason=reason))
    if not errors and body.strip():
        errors.append(LineError(line=0, original="", reason=reason))
    return errors


def refusal_errors(admission: Admission) -> list[LineError]:
    """A refused message's rejected lines, worded as the ingest path always has."""
    refusal = admission.refusal
    if refusal.too_large or refusal.undecodable:
        return [LineError(0, "", f"cannot decode message body: {refusal.reason}")]
    if refusal.invalid_document:
        return [LineError(1, admission.body[:4096].decode("utf-8", "replace"), refusal.reason)]
    return whole_message_error(admission.body, refusal.reason)


def write_order(table: ParsedTable, admission: Admission, offsets: np.ndarray,
                stamps: np.ndarray) -> pa.RecordBatch:
    """Append the write-order columns: ORDER_TS (message time, ms) and ORDER_SEQ
    (offset << 20 | line within the message); ``offsets``/``stamps`` are per write of the batch."""
    lines = table.lines.to_numpy(zero_copy_only=False).astype(np.int64)
    member = admission.member_of(lines)
    index = np.asarray(admission.members, dtype=np.int64)[member]
    starts = admission.starts if admission.starts is not None else np.ones(1, dtype=np.int64)
    seq = (offsets[index] << ROWS_PER_MESSAGE_BITS) + (lines - starts[member] + 1)
    return (table.batch.append_column(ORDER_TS, pa.array(stamps[index], pa.int64()))
            .append_column(ORDER_SEQ, pa.array(seq, pa.int64())))


def drop_obsolete_rows(rows: pa.RecordBatch, deleted_at: int | None,
                       watermark: int | None) -> pa.RecordBatch:
    """Rows not already in a file (offset above the watermark) and not deleted (pure)."""
    keep = None
    if deleted_at is not None:
        keep = pc.greater(rows.column(ORDER_TS), deleted_at)
    if watermark is not None:
        above = pc.greater_equal(rows.column(ORDER_SEQ), (watermark + 1) << ROWS_PER_MESSAGE_BITS)
        keep = above if keep is None else pc.and_(keep, above)
    return rows if keep is None else rows.filter(keep)


def by_partition(rows: pa.RecordBatch, partitions: np.ndarray) -> list[tuple[int, pa.RecordBatch]]:
    """Rows split by the source partition of each row (``partitions``, one per row), in
    partition order, row order kept within one; rows are usually already grouped (slices)."""
    if len(partitions) == 0 or partitions[0] == partitions[-1] and (
            len(partitions) < 3 or (partitions == partitions[0]).all()):
        return [(int(partitions[0]), rows)] if len(partitions) else []
    if (np.diff(partitions) >= 0).all():
        cuts = np.flatnonzero(np.diff(partitions)) + 1
        bounds = np.concatenate(([0], cuts, [len(partitions)]))
        return [(int(partitions[a]), rows.slice(int(a), int(b - a)))
                for a, b in zip(bounds[:-1], bounds[1:])]
    return [(int(p), rows.filter(pa.array(partitions == p))) for p in np.unique(partitions)]


async def ingest_batch(messages: list[WriteMessage], cache: CatalogCache, default_db: str,
                       max_body_bytes: int = 1 << 30) -> BatchOutcome:
    """Admit, order and split one batch of messages (no Kafka side effects). The messages may
    come from several source partitions (each partition's in offset order): they are parsed
    together, and every entry holds the rows of one partition, keyed by the last offset of
    that partition's messages in its group, exactly as if each partition's messages had come
    alone."""
    outcome = BatchOutcome()
    messages = [m for m in messages if NUDGE_HEADER not in m.headers]  # older workers' nudges
    if not messages:
        return outcome
    await cache.refresh()
    admissions = await admit([m.request(default_db, max_body_bytes) for m in messages], cache,
                             join=True)
    offsets = np.fromiter((m.offset for m in messages), np.int64, len(messages))
    stamps = np.fromiter((m.timestamp_ms for m in messages), np.int64, len(messages))
    sources = np.fromiter((m.partition for m in messages), np.int64, len(messages))
    parts: dict[tuple[str, str, str, int, int, str | None], list[pa.RecordBatch]] = defaultdict(
        list)
    for admission in admissions:
        db = admission.request.database
        first = messages[admission.members[0]]
        if admission.refusal is not None:
            outcome.rejected += [Rejection(db, e, first) for e in refusal_errors(admission)]
            continue
        members = np.asarray(admission.members, dtype=np.int64)
        # the last offset of this group's messages in each partition: the entries' offset
        last = {int(p): int(offsets[members[sources[members] == p]].max())
                for p in np.unique(sources[members])}
        for table in admission.tables:
            ordered = write_order(table, admission, offsets, stamps)
            template = await cache.template(db, table.name)
            deleted_at = cache.deleted_at(db, table.name)
            lines = table.lines.to_numpy(zero_copy_only=False).astype(np.int64)
            row_sources = sources[members[admission.member_of(lines)]]
            for partition, rows_of_partition in by_partition(ordered, row_sources):
                for pk, rows in split_rows(rows_of_partition, template).items():
                    mark = cache.watermark(db, table.name, pk, partition)
                    rows = drop_obsolete_rows(rows, deleted_at, mark)
                    if rows.num_rows:
                        parts[(db, table.name, pk, partition, last[partition],
                               admission.request.origin)].append(rows)
        for err in admission.rejected:
            i, line = admission.locate(err.line)
            outcome.rejected.append(Rejection(db, LineError(line, err.original, err.reason),
                                              messages[i]))
    for (db, table, pk, partition, offset, origin), batches in sorted(
            parts.items(), key=lambda kv: (kv[0][3], kv[0][4])):
        rows = batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)
        outcome.entries.append(BufferEntry(db, table, pk, offset, origin, rows, partition))
    outcome.rejected.sort(key=lambda r: (r.message.partition, r.message.offset, r.error.line))
    return outcome
