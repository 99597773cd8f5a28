"""One batch of writes messages (of one source partition) -> buffer entries and rejected lines.

Messages are grouped by (database, precision, origin); each group's bodies are joined and
parsed in one pass, checked against the (cached) catalog once per table, and split by partition
key, so the fixed costs of a parse, a schema check and an Arrow encode are paid per group, not
per message. Which message and line a row came from is recovered with vectorised look-ups on the
joined text's line numbers, so the write order (offset, line) — and with it last-write-wins —
is the same as when messages were handled one at a time, and every rejected line still names
its message (topic, partition, offset) and its line within that message.

Replays yield the same rows: rows at or below a buffer's watermark (already in a file) and rows
of a deleted database or table are dropped here, row by row in Arrow.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka.structs import ConsumerRecord

from agents.catalog_cache import CatalogCache
from persist.admission import (BodyTooLarge, UndecodableBody, database_name_error, decode_body,
                               precision_error)
from persist.catalog import schema_conflicts
from persist.partitioning import partition_keys, split_by_partition
from topics.line_protocol import LineError, ParsedTable
from topics.line_protocol.parser import parse_lp_undated
from topics.line_protocol.assemble import precision_unit
from topics.telegraf_json import is_json_message, read_document, to_line_protocol
from topics.validate import offered_columns, reject_rows, reserved_name_conflicts
from topics.wire import NUDGE_HEADER, ORDER_SEQ, ORDER_TS, ROWS_PER_MESSAGE_BITS, header_dict



@dataclass(frozen=True)
class WriteMessage:
    """The parts of a writes record the ingest step needs (decoupled from client types)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: dict[str, str]
    value: bytes

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> "WriteMessage":
        return cls(record.topic, record.partition, record.offset, record.timestamp,
                   header_dict(record.headers), record.value or b"")


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


@dataclass
class BatchOutcome:
    entries: list[BufferEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(e.rows.num_rows for e in self.entries)


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


def parses_alone(body: bytes) -> bool:
    """A message whose quotes might not close inside it is parsed on its own: a string field
    left open would otherwise run into the next message's lines."""
    return b'"' in body and (body.count(b'"') % 2 == 1 or b'\\"' in body)


@dataclass
class Group:
    """Messages parsed together: same database, precision and origin."""

    database: str
    precision: str
    origin: str | None
    json_precision: str | None = None  # a Telegraf JSON message (parsed alone), its precision
    messages: list[WriteMessage] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # global number of each message's line 1
    next_line: int = 1

    def add(self, msg: WriteMessage, body: bytes) -> None:
        self.messages.append(msg)
        self.bodies.append(body)
        self.starts.append(self.next_line)
        self.next_line += body.count(b"\n") + 1

    def locate(self, line: int) -> tuple[WriteMessage, int]:
        """The message of a global line number and the line's number within it."""
        i = max(bisect.bisect_right(self.starts, line) - 1, 0)
        return self.messages[i], line - self.starts[i] + 1


def group_messages(messages: list[WriteMessage], default_db: str, max_body_bytes: int = 1 << 30
                   ) -> tuple[list[Group], list[Rejection]]:
    """Decode and sort messages into parse groups (input order kept); whole-message rejections
    (undecodable body, bad database name or precision, as the write admission words them) come
    back directly. A message is never refused for its own size (the broker bounds it); what gzip
    inflates it to is bounded by ``max_body_bytes``."""
    groups: dict[tuple, Group] = {}
    rejected: list[Rejection] = []
    for msg in messages:
        if NUDGE_HEADER in msg.headers:
            continue  # an empty record older workers sent to reveal a stranded tail
        db = msg.headers.get("db") or default_db
        try:
            body = decode_body(msg.value, msg.headers.get("content-encoding"),
                               max(max_body_bytes, len(msg.value)))
        except (BodyTooLarge, UndecodableBody) as exc:
            rejected.append(Rejection(db, LineError(0, "", f"cannot decode message body: {exc}"),
                                      msg))
            continue
        precision = (msg.headers.get("precision") or "ns").strip().lower()
        reason = database_name_error(db) or precision_error(precision)
        if reason:
            rejected += [Rejection(db, e, msg) for e in whole_message_error(body, reason)]
            continue
        origin = msg.headers.get("origin")
        if is_json_message(msg.headers, body):  # Telegraf JSON: rendered to line protocol alone
            # Telegraf sets no headers: without one, the timestamp's magnitude tells its unit
            group = groups[(db, "json", origin, msg.offset)] = Group(
                db, "ns", origin, json_precision=precision if "precision" in msg.headers else "auto")
            group.add(msg, body)
            continue
        key = (db, precision, origin, msg.offset if parses_alone(body) else None)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(db, precision, origin)
        group.add(msg, body)
    return list(groups.values()), rejected


def write_order(table: ParsedTable, group: Group) -> pa.RecordBatch:
    """Fill missing times with each row's message time and append the write-order columns:
    ORDER_TS (message time, ms) and ORDER_SEQ (offset << 20 | line within the message)."""
    lines = table.lines.to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.asarray(group.starts, dtype=np.int64)
    index = np.searchsorted(starts, lines, side="right") - 1
    offsets = np.asarray([m.offset for m in group.messages], dtype=np.int64)
    stamps = np.asarray([m.timestamp_ms for m in group.messages], dtype=np.int64)
    row_ts = stamps[index]
    seq = (offsets[index] << ROWS_PER_MESSAGE_BITS) + (lines - starts[index] + 1)
    batch = table.batch
    times = batch.column("time")
    if times.null_count:
        unit = precision_unit(group.precision)
        default = row_ts * 1_000_000
        if unit > 1:
            default -= default % unit
        filled = pc.fill_null(times, pa.array(default, pa.int64()).view(pa.timestamp("ns")))
        batch = batch.set_column(batch.schema.get_field_index("time"), "time", filled)
    return (batch.append_column(ORDER_TS, pa.array(row_ts, pa.int64()))
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


async def ingest_batch(messages: list[WriteMessage], cache: CatalogCache, default_db: str,
                       max_body_bytes: int = 1 << 30) -> BatchOutcome:
    """Parse, validate and split one partition's batch of messages (no Kafka side effects)."""
    groups, rejected = group_messages(messages, default_db, max_body_bytes)
    outcome = BatchOutcome(rejected=rejected)
    if not groups:
        return outcome
    await cache.refresh()
    parts: dict[tuple[str, str, str, int, str | None], list[pa.RecordBatch]] = defaultdict(list)
    for group in groups:
        data = b"\n".join(group.bodies)
        json_view = None
        if group.json_precision is not None:
            try:
                doc = read_document(data)
                known = {n: (await cache.catalog.table_schema(group.database, n)).fields
                         for n in doc.names}
                json_view = to_line_protocol(doc, group.json_precision, known)
            except ValueError as exc:
                outcome.rejected.append(Rejection(group.database, LineError(
                    1, data[:4096].decode("utf-8", "replace"), str(exc)), group.messages[0]))
                continue
            data = json_view.body
        result = parse_lp_undated(data, precision=group.precision)
        errors = list(result.errors)
        raw_lines: list[bytes] | None = None
        last = group.messages[-1]
        for table in result.tables.values():
            offered = offered_columns(table)
            conflicts = reserved_name_conflicts(table)
            known = await cache.columns(group.database, table.name,
                                        {c: k for c, k in offered.items() if c not in conflicts})
            conflicts.update(schema_conflicts(offered, known))
            kept: ParsedTable | None = table
            if conflicts:
                raw_lines = raw_lines if raw_lines is not None else data.split(b"\n")
                kept, more = reject_rows(table, conflicts, raw_lines)
                errors.extend(more)
            if kept is None:
                continue
            ordered = write_order(kept, group)
            template = await cache.template(group.database, table.name)
            deleted_at = cache.deleted_at(group.database, table.name)
            for pk, rows in split_by_partition(ordered, partition_keys(ordered, template)).items():
                mark = cache.watermark(group.database, table.name, pk, last.partition)
                rows = drop_obsolete_rows(rows, deleted_at, mark)
                if rows.num_rows:
                    parts[(group.database, table.name, pk, last.offset, group.origin)].append(rows)
        if json_view is not None:  # errors name the JSON element, not the rendered line
            errors = json_view.in_json_terms(errors)
        for err in errors:
            msg, line = group.locate(err.line)
            outcome.rejected.append(Rejection(group.database,
                                              LineError(line, err.original, err.reason), msg))
    for (db, table, pk, offset, origin), batches in sorted(parts.items(), key=lambda kv: kv[0][3]):
        rows = batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)
        outcome.entries.append(BufferEntry(db, table, pk, offset, origin, rows))
    outcome.rejected.sort(key=lambda r: (r.message.offset, r.error.line))
    return outcome
