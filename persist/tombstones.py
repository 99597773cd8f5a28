"""Tombstones (pure): a row delete recorded as a predicate, applied when rows are read.

A tombstone names a database, optionally one table (None: every table), an inclusive time range
and a tag predicate, and hides the rows it matches that were *written before it*:

- buffered rows carry their write time (the Kafka timestamp, ``ORDER_TS``), so a tombstone hides
  a buffered row only when the row was written at or before the tombstone's ``created_ms``;
- a Parquet file records ``tombstone_seq``, the highest tombstone id already applied to its rows
  when it was written (persist and compaction both apply every tombstone they see). A newer
  tombstone was created after the file's rows were read from the buffers, so it applies to the
  whole file.

A write after a delete therefore stays visible, and a replay of old writes stays deleted (their
Kafka timestamps do not change).

Predicates are small JSON trees: ``{"tag": k, "op": "=" | "!=" | "=~" | "!~", "value": v}``,
``{"and": [...]}`` and ``{"or": [...]}``; ``None`` matches every series. As in InfluxDB, a
missing tag compares as the empty string.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from topics.wire import ORDER_TS

OPS = ("=", "!=", "=~", "!~")


class PredicateError(ValueError):
    """A delete predicate that cannot be applied (reported to the client as a 400)."""


@dataclass(frozen=True)
class Tombstone:
    database: str
    table: str | None
    min_time: int
    max_time: int
    predicate: dict | None = None
    created_ms: int = 0
    id: int = 0
    source: str = ""  # the statement or request that created it, for system tables and logs
    tags: tuple[str, ...] = field(default=())  # tag names the predicate reads

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Tombstone":
        raw = json.loads(text)
        raw["tags"] = tuple(raw.get("tags") or ())
        return cls(**raw)

    def covers(self, table: str) -> bool:
        return self.table is None or self.table == table

    def overlaps(self, min_time: int, max_time: int) -> bool:
        return self.min_time <= max_time and min_time <= self.max_time


def predicate_tags(predicate: dict | None) -> tuple[str, ...]:
    """The tag names a predicate reads, validating its shape on the way."""
    if predicate is None:
        return ()
    if "tag" in predicate:
        if predicate.get("op") not in OPS or not isinstance(predicate.get("value"), str):
            raise PredicateError(f"invalid comparison in delete predicate: {predicate}")
        if predicate["op"] in ("=~", "!~"):
            try:
                re.compile(predicate["value"])
            except re.error as exc:
                raise PredicateError(f"invalid regex in delete predicate: {exc}") from exc
        return (predicate["tag"],)
    parts = predicate.get("and", predicate.get("or"))
    if not isinstance(parts, list) or not parts:
        raise PredicateError(f"invalid delete predicate: {predicate}")
    names: list[str] = []
    for part in parts:
        names.extend(n for n in predicate_tags(part) if n not in names)
    return tuple(names)


def _tag_values(table: pa.Table, tag: str) -> pa.ChunkedArray | pa.Array:
    if tag not in table.column_names:
        return pa.repeat(pa.scalar("", pa.string()), table.num_rows)
    column = table.column(tag)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pa.repeat(pa.scalar("\x00not-a-tag", pa.string()), table.num_rows)
    return pc.fill_null(column, "")


def predicate_mask(table: pa.Table, predicate: dict | None):
    """Rows the predicate matches (a boolean array without nulls)."""
    if predicate is None:
        return pa.repeat(pa.scalar(True), table.num_rows)
    if "tag" in predicate:
        values = _tag_values(table, predicate["tag"])
        op, value = predicate["op"], predicate["value"]
        if op in ("=", "!="):
            hit = pc.equal(values, value)
        else:
            hit = pc.match_substring_regex(values, value)
        return pc.invert(hit) if op in ("!=", "!~") else hit
    combine = pc.and_ if "and" in predicate else pc.or_
    mask = None
    for part in predicate.get("and", predicate.get("or")):
        sub = predicate_mask(table, part)
        mask = sub if mask is None else combine(mask, sub)
    return mask


def tombstone_mask(table: pa.Table, tomb: Tombstone, by_write_time: bool):
    """Rows of ``table`` the tombstone deletes; ``by_write_time``: only rows written at or
    before it (buffered rows), else all matching rows (a file older than the tombstone)."""
    ns = pc.cast(table.column("time"), pa.int64())
    mask = pc.and_(pc.greater_equal(ns, tomb.min_time), pc.less_equal(ns, tomb.max_time))
    if by_write_time and ORDER_TS in table.column_names:
        mask = pc.and_(mask, pc.less_equal(table.column(ORDER_TS), tomb.created_ms))
    if tomb.predicate is not None:
        mask = pc.and_(mask, predicate_mask(table, tomb.predicate))
    return mask


def purgeable(tomb: Tombstone, files, oldest_buffered_ms: int | None, now_ms: int,
              min_age_ms: int) -> bool:
    """Whether a tombstone hides nothing any more, so the catalog can forget it: every file of
    its tables (``files``: objects with ``tombstone_seq``, ``min_time``, ``max_time``) that it
    can touch was written with it applied, no buffered row (``oldest_buffered_ms``: the oldest
    write time of the tables' buffered rows, None when nothing is buffered) was written before
    it, and it is at least ``min_age_ms`` old, so writes made before it and not yet consumed
    (consumer lag) are not expected any more."""
    if now_ms - tomb.created_ms < min_age_ms:
        return False
    if oldest_buffered_ms is not None and oldest_buffered_ms <= tomb.created_ms:
        return False
    return all(f.tombstone_seq >= tomb.id or not tomb.overlaps(f.min_time, f.max_time)
               for f in files)


def drop_deleted(table: pa.Table, tombstones: list[Tombstone], by_write_time: bool) -> pa.Table:
    """``table`` without the rows any of ``tombstones`` deletes."""
    if not tombstones or table.num_rows == 0:
        return table
    hit = None
    for tomb in tombstones:
        mask = tombstone_mask(table, tomb, by_write_time)
        hit = mask if hit is None else pc.or_(hit, mask)
    return table.filter(pc.invert(hit))
