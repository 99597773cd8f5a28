"""InfluxDB line protocol -> Arrow record batches (InfluxDB 3 / IOx semantics).

``parse_lp`` turns a whole message (one to many thousands of lines) into one batch per
measurement with whole-message C-level passes (``lines`` cuts the message, ``columnar``
parses plain lines column-wise); only the rare lines that pass cannot vouch for go through the
exact per-line parser (``grammar``), which is also the reference the vectorised path is tested
against. ``assemble`` applies precision and the rules between lines and builds the batches.
Messages under ``VECTORISE_MIN_BYTES`` go line by line: below that the columnar passes' fixed
cost exceeds the per-line work.

``_vectorise`` (True/False) forces a path; tests use it to hold both paths to the same results.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from topics.line_protocol.assemble import assemble, precision_unit, truncate_default_time
from topics.line_protocol.columnar import parse_plain_block
from topics.line_protocol.lines import Plan, PlainBlock, general_plan, split_by_spaces, uniform_plan, without_crlf
from topics.line_protocol.model import ARROW_TYPES, MAX_VALUE_BYTES, FieldType, LineError, Segment
from topics.line_protocol.grammar import LineSyntaxError, ParsedLine, parse_text, split_lines

__all__ = ["ARROW_TYPES", "FieldType", "LineError", "ParsedTable", "ParseResult", "parse_lp",
           "parse_lp_records", "parse_lp_main", "serialize_point", "format_field_value"]

#: Below this size the exact per-line parser is faster: the columnar passes cost a fixed ~1.5 ms
#: per message (CSV reader set-up, ~100 Arrow calls), the per-line parser ~40 us per TSBS line;
#: measured crossover about 30 lines / 10 KB.
VECTORISE_MIN_BYTES = 8192


@dataclass
class ParsedTable:
    name: str                    # measurement
    batch: pa.RecordBatch        # tag columns (string), field columns (typed), then "time"
    tags: list[str]              # which columns are tags (sorted)
    fields: dict[str, FieldType]  # field columns and their LP types
    lines: pa.Array              # int32: the 1-based input line of each row (input order)


@dataclass
class ParseResult:
    tables: dict[str, ParsedTable]
    errors: list[LineError]      # sorted by line
    points: int                  # number of valid points (rows over all tables)


# ---------------------------------------------------------------------------------------------
# Parsing


def _decoded(piece: bytes) -> str:
    return piece.decode("utf-8", "replace")


def _fallback_segments(items: Iterable[tuple[int, bytes]]) -> tuple[list[Segment], list[LineError]]:
    """Parse lines one by one with the exact parser; group good rows by signature."""
    errors: list[LineError] = []
    groups: dict[tuple, list[tuple[int, ParsedLine]]] = {}
    for line, piece in sorted(items, key=lambda item: item[0]):
        try:
            parsed = parse_text(piece)
        except LineSyntaxError as exc:
            errors.append(LineError(line, _decoded(piece), str(exc)))
            continue
        if parsed is None:
            continue
        key = (parsed.measurement, tuple(sorted(k for k, _ in parsed.tags)),
               tuple(sorted((k, t) for k, t, _ in parsed.fields)))
        groups.setdefault(key, []).append((line, parsed))
    segments = []
    for (measurement, tag_keys, field_items), rows in groups.items():
        tag_maps = [dict(p.tags) for _, p in rows]
        field_maps = [{k: v for k, _, v in p.fields} for _, p in rows]
        segments.append(Segment(
            measurement,
            pa.array([line for line, _ in rows], pa.int32()),
            {k: pa.array([m[k] for m in tag_maps], pa.string()) for k in tag_keys},
            {k: (t, pa.array([m[k] for m in field_maps], ARROW_TYPES[t])) for k, t in field_items},
            pa.array([p.timestamp for _, p in rows], pa.int64())))
    return segments, errors


class _Originals:
    """Original text of lines by number, for error reports (built only when needed)."""

    def __init__(self, data: bytes, logical: dict[int, bytes]):
        self._data = data
        self._logical = logical
        self._physical: list[bytes] | None = None

    def __call__(self, numbers: list[int]) -> list[str]:
        out = []
        for n in numbers:
            piece = self._logical.get(n)
            if piece is None:
                if self._physical is None:
                    self._physical = self._data.split(b"\n")
                piece = self._physical[n - 1] if 0 < n <= len(self._physical) else b""
                piece = piece[:-1] if piece.endswith(b"\r") else piece
            out.append(_decoded(piece))
        return out


def _block(block: PlainBlock, regroup: bool = True) -> tuple[list[Segment], list[tuple[int, bytes]]]:
    """Parse one block of plain lines; regroup it by number of spaces if its lines differ."""
    result = parse_plain_block(block.buffer, block.lines, block.with_time)
    if result is not None:
        return result.segments, result.fallback
    if not regroup:  # the spaces were counted, so this cannot happen; stay exact anyway
        return [], list(zip(block.lines.to_pylist(), bytes(block.buffer).split(b"\n")))
    regrouped = split_by_spaces(block)
    segments, fallback = [], list(regrouped.fallback)
    for sub in regrouped.blocks:
        more, other = _block(sub, regroup=False)
        segments += more
        fallback += other
    return segments, fallback


def _vectorised(data: bytes) -> tuple[list[Segment], list[tuple[int, bytes]]]:
    """Segments of the lines the columnar passes take; the other lines for the exact parser."""
    data = without_crlf(data)
    whole = uniform_plan(data)
    if whole is not None:
        result = parse_plain_block(whole.buffer, whole.lines, whole.with_time)
        if result is not None:
            return result.segments, result.fallback
    plan: Plan = general_plan(data)
    segments: list[Segment] = []
    fallback = list(plan.fallback)
    for block in plan.blocks:
        more, other = _block(block)
        segments += more
        fallback += other
    return segments, fallback


def _parse(data: bytes, precision: str, default_ns: int | None, vectorise: bool | None = None) -> ParseResult:
    precision_unit(precision)  # reject an unknown precision before any work
    if not isinstance(data, bytes):
        data = bytes(data)
    if vectorise is None:
        vectorise = len(data) >= VECTORISE_MIN_BYTES
    if vectorise:
        segments, fallback = _vectorised(data)
    else:
        segments, fallback = [], list(split_lines(data))
    more, errors = _fallback_segments(fallback)
    logical = {line: piece for line, piece in fallback if b"\n" in piece}
    assembled = assemble(segments + more, precision, default_ns, _Originals(data, logical))
    errors = sorted(errors + assembled.errors, key=lambda e: e.line)
    tables = {name: ParsedTable(name, batch, tags, fields, lines)
              for name, (batch, tags, fields, lines) in assembled.tables.items()}
    return ParseResult(tables, errors, assembled.points)


def parse_lp(data: bytes, *, precision: str = "ns", default_time: int | None = None,
             _vectorise: bool | None = None) -> ParseResult:
    """Parse a message; a line without timestamp takes ``default_time`` (ns) or the current
    time, truncated to the precision. Raises ValueError for an unknown precision."""
    unit = precision_unit(precision)
    now = time.time_ns() if default_time is None else default_time
    return _parse(data, precision, truncate_default_time(now, unit), _vectorise)


def parse_lp_records(data: bytes, *, precision: str = "ns", default_time: int | None = None,
                     _vectorise: bool | None = None) -> list[dict]:
    """One dict per line that is neither blank nor a comment, in input order.

    ``{"line", "measurement", "tags", "fields": {name: {"type", "value"}}, "timestamp"}`` (ns, null
    when the line has none and there is no default) or ``{"line", "error"}``.
    """
    unit = precision_unit(precision)
    default_ns = None if default_time is None else truncate_default_time(default_time, unit)
    result = _parse(data, precision, default_ns, _vectorise)
    records: list[dict] = [{"line": e.line, "error": e.reason} for e in result.errors]
    for table in result.tables.values():
        batch = table.batch
        columns = {name: batch.column(name).to_pylist() for name in table.tags + list(table.fields)}
        times = batch.column("time").view(pa.int64()).to_pylist()
        for i, line in enumerate(table.lines.to_pylist()):
            records.append({
                "line": line,
                "measurement": table.name,
                "tags": {k: columns[k][i] for k in table.tags if columns[k][i] is not None},
                "fields": {k: {"type": t, "value": columns[k][i]}
                           for k, t in table.fields.items() if columns[k][i] is not None},
                "timestamp": times[i],
            })
    records.sort(key=lambda r: r["line"])
    return records


def parse_lp_main(stdin: bytes, precision: str = "ns", default_time: int | None = None
                  ) -> tuple[list[str], int]:
    """What ``influent parse-lp`` prints: one JSON object per line; status 0 iff all valid."""
    records = parse_lp_records(stdin, precision=precision, default_time=default_time)
    out = [orjson.dumps(r).decode() for r in records]
    return out, 1 if any("error" in r for r in records) else 0


# ---------------------------------------------------------------------------------------------
# Serialising


def escape_name(text: str, specials: str, what: str) -> str:
    if not text:
        raise ValueError(f"{what} must not be empty")
    if text.endswith("\\"):
        raise ValueError(f"{what} must not end with a backslash: {text!r}")
    if "\n" in text or "\t" in text:
        raise ValueError(f"{what} must not contain a newline or tab: {text!r}")
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"{what} is longer than {MAX_VALUE_BYTES} bytes")
    out = text.replace("\\", "\\\\")
    for c in specials:
        out = out.replace(c, "\\" + c)
    return out


def format_field_value(kind: FieldType, value: Any) -> str:
    """One field value in line protocol syntax."""
    if kind == "float":
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"line protocol cannot carry the float {v}")
        return repr(v)
    if kind == "integer":
        if not -(1 << 63) <= int(value) < (1 << 63):
            raise ValueError(f"integer out of range: {value}")
        return f"{int(value)}i"
    if kind == "uinteger":
        if not 0 <= int(value) < (1 << 64):
            raise ValueError(f"unsigned integer out of range: {value}")
        return f"{int(value)}u"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "string":
        text = str(value)
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"string value is longer than {MAX_VALUE_BYTES} bytes")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ValueError(f"unknown field type {kind!r}")


def _infer(value: Any) -> tuple[FieldType, Any]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, int):
        return "integer", value
    if isinstance(value, float):
        return "float", value
    if isinstance(value, str):
        return "string", value
    raise ValueError(f"cannot infer the line protocol type of {value!r}")


def serialize_point(measurement: str, tags: Mapping[str, str],
                    fields: Mapping[str, tuple[FieldType, Any] | bool | int | float | str],
                    timestamp: int | None = None) -> str:
    """One line of line protocol (no newline) that ``parse_lp`` reads back to the same point.

    A field value is ``(type, value)`` or a plain Python value (bool, int -> integer, float, str).
    Tags are written in key order. ValueError for what line protocol cannot carry (empty
    names, names ending in a backslash or holding a newline/tab, a measurement starting with
    ``#`` or holding NUL, non-finite floats).
    """
    if measurement.startswith("#") or "\x00" in measurement:
        raise ValueError(f"measurement cannot be written in line protocol: {measurement!r}")
    if not fields:
        raise ValueError("a point needs at least one field")
    parts = [escape_name(measurement, ", ", "measurement")]
    for key in sorted(tags):
        parts.append("," + escape_name(key, ",= ", "tag key") + "=" + escape_name(tags[key], ",= ", "tag value"))
    out = ["".join(parts), " "]
    items = []
    for key, value in fields.items():
        kind, v = _infer(value)
        items.append(escape_name(key, ",= ", "field key") + "=" + format_field_value(kind, v))
    out.append(",".join(items))
    if timestamp is not None:
        out.append(f" {int(timestamp)}")
    return "".join(out)


def parse_lp_undated(data: bytes, *, precision: str = "ns") -> ParseResult:
    """Like :func:`parse_lp`, but a line without timestamp keeps a null ``time``: a caller that
    parses many messages in one pass fills it with each message's own ingest time."""
    precision_unit(precision)
    return _parse(data, precision, None)
