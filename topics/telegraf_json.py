"""Telegraf's JSON serializer format -> line protocol (pure).

A writes message (or a ``POST /api/v3/write_json`` body) in Telegraf's JSON format — one metric
``{"name", "tags", "fields", "timestamp"}``, a batch ``{"metrics": [...]}`` or a JSON array of
metrics — is rendered to exact line protocol, one line per metric in document order (a metric
that cannot be rendered leaves an empty line). Everything after that is the line protocol path
itself: parse, checks, catalog types, rejected-line records, dedup order. Only the names
change: :meth:`JsonAsLineProtocol.in_json_terms` turns a line error back into one that names
the JSON element (``metrics[3]``) and quotes it.

Types. JSON has one number type, and Telegraf's Go encoder writes the float 1.0 as ``1``, so a
number becomes a float field — unless the catalog already holds that field as an integer
(``integer``/``uinteger``) and the number is integral: then it stays an integer. Strings and
booleans keep their types; ``null`` is an absent field; objects and arrays are rejected.
Tags: strings as they are, numbers and booleans as their JSON text, ``null`` or ``""`` absent.

Timestamps: integers in the write's precision (Telegraf's ``json_timestamp_units``: ``s`` by
default there; ``auto`` guesses from the magnitude as line protocol does), floats likewise
(rounded to the nanosecond), or RFC 3339 strings (``json_timestamp_format``); a metric without
one takes the message's time.
"""
from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from topics.line_protocol import LineError, escape_name, format_field_value
from topics.line_protocol.assemble import precision_unit

JSON_CONTENT_TYPE = "application/json"
INTEGER_KINDS = ("integer", "uinteger")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_RFC3339 = re.compile(r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
                      r"(?P<zone>Z|[+-]\d\d:\d\d)$")


def is_json_message(headers: Mapping[str, str], body: bytes) -> bool:
    """A writes message is JSON when its ``content-type`` says so; without one, when the body
    starts with ``{`` (Telegraf's Kafka output sets no headers)."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind:
        return kind == JSON_CONTENT_TYPE or kind.endswith("+json")
    return body.lstrip()[:1] == b"{"


@dataclass(frozen=True)
class JsonDocument:
    """The metrics of one JSON body and the path that names each (``metrics[3]``)."""

    metrics: list[Any]
    paths: list[str]

    @property
    def names(self) -> set[str]:
        return {m["name"] for m in self.metrics if isinstance(m, dict) and isinstance(m.get("name"), str)}


def read_document(body: bytes) -> JsonDocument:
    """Parse a body; ValueError when it is not JSON or not one of the three shapes."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if isinstance(doc, dict) and "metrics" in doc:
        metrics = doc["metrics"]
        if not isinstance(metrics, list):
            raise ValueError('"metrics" must be an array of metrics')
        return JsonDocument(metrics, [f"metrics[{i}]" for i in range(len(metrics))])
    if isinstance(doc, dict):
        return JsonDocument([doc], ["metric"])
    if isinstance(doc, list):
        return JsonDocument(doc, [f"[{i}]" for i in range(len(doc))])
    raise ValueError("expected a metric object, {\"metrics\": [...]} or an array of metrics")


@dataclass
class JsonAsLineProtocol:
    """A JSON body rendered to line protocol, one metric after the other (a string field that
    holds a newline makes its metric span more than one line)."""

    body: bytes
    paths: list[str]
    metrics: list[Any]
    errors: list[LineError] = field(default_factory=list)  # metrics that could not be rendered
    first_lines: list[int] = field(default_factory=list)  # element k starts on line first_lines[k-1]

    def element_of(self, line: int) -> int:
        """The element (1-based) whose rendering holds line ``line`` of the body."""
        if not self.first_lines:
            return line
        return bisect_right(self.first_lines, line)

    def original(self, number: int) -> str:
        """The JSON text of element ``number`` (1-based), for a rejected-line record."""
        return orjson.dumps(self.metrics[number - 1]).decode()

    def in_json_terms(self, errors: list[LineError]) -> list[LineError]:
        """Line errors of the rendered body, renamed to the JSON elements, plus the render
        errors; sorted by element."""
        out = list(self.errors)
        for err in errors:
            k = self.element_of(err.line)
            if 1 <= k <= len(self.paths):
                out.append(LineError(k, self.original(k), f"{self.paths[k - 1]}: {err.reason}"))
            else:
                out.append(err)
        return sorted(out, key=lambda e: e.line)


def to_line_protocol(doc: JsonDocument, precision: str,
                     known_fields: Mapping[str, Mapping[str, str]] | None = None) -> JsonAsLineProtocol:
    """Render every metric as one line with a nanosecond timestamp (parse it with precision
    ``ns``). ``known_fields``: table -> field -> catalog kind, for the integer rule."""
    unit = precision_unit(precision)  # ValueError for an unknown precision
    known_fields = known_fields or {}
    lines: list[str] = []
    errors: list[LineError] = []
    first_lines: list[int] = []
    line = 1
    for number, (metric, path) in enumerate(zip(doc.metrics, doc.paths), start=1):
        first_lines.append(line)
        try:
            lines.append(_render(metric, unit, known_fields))
        except ValueError as exc:
            lines.append("")
            errors.append(LineError(number, orjson.dumps(metric).decode(), f"{path}: {exc}"))
        line += 1 + lines[-1].count("\n")
    return JsonAsLineProtocol("\n".join(lines).encode(), list(doc.paths), doc.metrics, errors,
                              first_lines)


# Names and tag values repeat from metric to metric: each is escaped (and checked) once.
@lru_cache(maxsize=65536)
def _measurement(name: str) -> str:
    if name.startswith("#") or "\x00" in name:
        raise ValueError(f"measurement cannot be written in line protocol: {name!r}")
    return escape_name(name, ", ", "measurement")


@lru_cache(maxsize=65536)
def _key(name: str, what: str) -> str:
    return escape_name(name, ",= ", what)


@lru_cache(maxsize=262144)
def _tag_value(value: str) -> str:
    return escape_name(value, ",= ", "tag value")


def _render(metric: Any, unit: int, known_fields: Mapping[str, Mapping[str, str]]) -> str:
    if not isinstance(metric, dict):
        raise ValueError("a metric must be a JSON object")
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError('"name" must be a non-empty string')
    tags = metric.get("tags") or {}
    fields = metric.get("fields")
    if not isinstance(tags, dict):
        raise ValueError('"tags" must be an object')
    if not isinstance(fields, dict):
        raise ValueError('"fields" must be an object')
    known = known_fields.get(name)
    pieces = []
    for key, value in fields.items():
        if value is None:
            continue
        kind, v = _field(key, value, known.get(key) if known else None)
        pieces.append(_key(key, "field key") + "=" + format_field_value(kind, v))
    if not pieces:
        raise ValueError("a metric needs at least one field")
    head = [_measurement(name)]
    for key in sorted(tags):
        text = _tag(key, tags[key])
        if text:
            head.append("," + _key(key, "tag key") + "=" + _tag_value(text))
    head.append(" ")
    head.append(",".join(pieces))
    timestamp = _timestamp(metric.get("timestamp"), unit)
    if timestamp is not None:
        head.append(f" {timestamp}")
    return "".join(head)


def _field(key: str, value: Any, integer_kind: str | None) -> tuple[str, Any]:
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, (int, float)):
        if integer_kind in INTEGER_KINDS:
            integral = isinstance(value, int) or (value.is_integer() and abs(value) < 2 ** 53)
            if integer_kind == "integer" and integral and _INT64[0] <= value <= _INT64[1]:
                return "integer", int(value)
            if integer_kind == "uinteger" and integral and 0 <= value < (1 << 64):
                return "uinteger", int(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"field '{key}': {value} does not fit a float")
        return "float", number
    what = "an object" if isinstance(value, dict) else "an array"
    raise ValueError(f"field '{key}' holds {what}; a field is a number, string or boolean")


def _tag(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return orjson.dumps(value).decode()
    raise ValueError(f"tag '{key}' must be a string, not {type(value).__name__}")


def _timestamp(value: Any, unit: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError('"timestamp" must be a number or an RFC 3339 string')
    if isinstance(value, str):
        ns = _rfc3339_ns(value)
    elif isinstance(value, (int, float)):
        ns = round(value * (unit or _auto_unit(value)))
    else:
        raise ValueError('"timestamp" must be a number or an RFC 3339 string')
    if not _INT64[0] <= ns <= _INT64[1]:
        raise ValueError(f"timestamp {value} is out of range")
    return ns


def _auto_unit(value: float) -> int:
    """InfluxDB 3's ``auto`` precision: the magnitude tells s, ms, us or ns."""
    magnitude = abs(value)
    for limit, unit in ((5e9, 1_000_000_000), (5e12, 1_000_000), (5e15, 1_000)):
        if magnitude < limit:
            return unit
    return 1


def _rfc3339_ns(text: str) -> int:
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f'"timestamp" {text!r} is not an RFC 3339 time')
    zone = match["zone"].replace("Z", "+00:00")
    try:
        seconds = datetime.fromisoformat(match["base"] + zone).timestamp()
    except ValueError as exc:
        raise ValueError(f'"timestamp" {text!r}: {exc}') from None
    frac = (match["frac"] or "").ljust(9, "0")
    return int(seconds) * 1_000_000_000 + int(frac)
