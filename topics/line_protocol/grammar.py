"""Exact line protocol syntax, one line at a time (the reference for every other path).

This follows the InfluxDB 3 / IOx parser (``influxdb_line_protocol``) rule for rule: how the input
splits into lines (a newline inside a quoted field value or after a backslash does not end the
line), which characters end each element, which escapes are known, the value grammars and their
ranges. It is the fallback of the vectorised parser for the rare lines that parser cannot take
(escapes, quotes around separators, odd shapes), and it decides the error reason of every bad line,
so both paths reject the same lines for the same reasons.

One deliberate addition: a carriage return that ends a line is dropped (CRLF input).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from topics.line_protocol.model import MAX_VALUE_BYTES, TIME_COLUMN, FieldType

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_CONTEXT_CHARS = 20

# Characters that end an element (or start an escape), per element kind.
_MEASUREMENT_STOP = re.compile(r"[ \t\n\x00,\\]")
_KEY_STOP = re.compile(r"[ \t\n=\\]")          # tag keys and field keys
_TAG_VALUE_STOP = re.compile(r"[ \t\n,\\]")
_MEASUREMENT_ESCAPES = frozenset(", \\")
_ESCAPES = frozenset(",= \\")
_STRING_SPECIAL = re.compile(r'["\\]')

#: The syntax of each unquoted field value (regular expressions also valid in RE2, so the
#: columnar path matches whole columns with exactly these) and the boolean spellings.
INTEGER_SYNTAX = r"-?[0-9]+i"
UINTEGER_SYNTAX = r"[0-9]+u"
FLOAT_SYNTAX = r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
TRUE_SPELLINGS = ("true", "True", "TRUE", "t", "T")
FALSE_SPELLINGS = ("false", "False", "FALSE", "f", "F")

_INT = re.compile(INTEGER_SYNTAX)
_UINT = re.compile(UINTEGER_SYNTAX)
_FLOAT = re.compile(FLOAT_SYNTAX)
_BOOL = re.compile("|".join(TRUE_SPELLINGS + FALSE_SPELLINGS))  # longest spelling first
_TIMESTAMP = re.compile(r"-?[0-9]+")
_TOKEN_END = re.compile(r"[ ,]")

# Bytes that matter when splitting the input into lines.
_SPLIT_SPECIAL = re.compile(rb'[\\ =,"\n]')


class LineSyntaxError(ValueError):
    """A line is not valid line protocol; the message is the human reason."""


@dataclass
class ParsedLine:
    measurement: str
    tags: list[tuple[str, str]]
    fields: list[tuple[str, FieldType, object]]
    timestamp: int | None


# ---------------------------------------------------------------------------------------------
# Splitting the input into lines


def logical_line_end(data: bytes, start: int) -> int:
    """Index of the newline that ends the line starting at ``start`` (or ``len(data)``).

    A newline does not end a line when it is escaped by a backslash, or when it sits inside a
    double-quoted field value; a double quote only opens or closes a value after the first space
    and when more ``=`` than ``,`` have been seen there (so quotes in keys do not count).
    """
    quoted = fields = False
    equals = commas = 0
    i = start
    search = _SPLIT_SPECIAL.search
    while True:
        m = search(data, i)
        if m is None:
            return len(data)
        j = m.start()
        c = data[j]
        if c == 0x5C:      # backslash: the next byte is taken literally
            i = j + 2
            continue
        if c == 0x20:
            fields = True
        elif fields and not quoted and c == 0x3D:
            equals += 1
        elif fields and not quoted and c == 0x2C:
            commas += 1
        elif fields and c == 0x22 and equals > commas:
            quoted = not quoted
        elif c == 0x0A and not quoted:
            return j
        i = j + 1


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, text)`` for every line of ``data`` (1-based physical line numbers).

    The text excludes the terminating newline and a carriage return just before it.
    """
    start, line = 0, 1
    n = len(data)
    while start <= n:
        end = logical_line_end(data, start)
        yield line, strip_cr(data[start:end])
        line += data.count(b"\n", start, end) + 1
        start = end + 1


def strip_cr(piece: bytes) -> bytes:
    return piece[:-1] if piece.endswith(b"\r") else piece


def trim_leading(piece: bytes) -> bytes:
    """Drop leading spaces, tabs and newlines, and comments (``#`` to the next newline)."""
    while True:
        piece = piece.lstrip(b" \t\n")
        if not piece.startswith(b"#"):
            return piece
        k = piece.find(b"\n")
        piece = b"" if k < 0 else piece[k:]


# ---------------------------------------------------------------------------------------------
# One line


def _context(s: str, i: int) -> str:
    rest = s[i:]
    if not rest:
        return "end of line"
    if len(rest) > _CONTEXT_CHARS:
        rest = rest[:_CONTEXT_CHARS] + "..."
    return f"'{rest}'"


def _too_long(text: str) -> bool:
    return len(text) > MAX_VALUE_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES


def _scan(s: str, i: int, stop: re.Pattern[str], known: frozenset[str]) -> tuple[str, int]:
    """Read an escapable element from ``i`` up to an unescaped stop character.

    A backslash before a known character yields that character; before any other character
    both are kept; a trailing backslash is kept.
    """
    parts = []
    n = len(s)
    while True:
        m = stop.search(s, i)
        j = m.start() if m else n
        if j > i:
            parts.append(s[i:j])
        if j == n or s[j] != "\\":
            return "".join(parts), j
        if j + 1 < n:
            c = s[j + 1]
            parts.append(c if c in known else "\\" + c)
            i = j + 2
        else:
            parts.append("\\")
            return "".join(parts), n


def _check_name(text: str, what: str) -> None:
    if text.endswith("\\"):
        raise LineSyntaxError(f"{what} must not end with a backslash")
    if _too_long(text):
        raise LineSyntaxError(f"{what} is longer than {MAX_VALUE_BYTES} bytes")


def _string_value(s: str, i: int, key: str) -> tuple[str, int]:
    """Parse a double-quoted string starting at ``s[i] == '"'``; return (value, end)."""
    parts = []
    n = len(s)
    j = i + 1
    while True:
        m = _STRING_SPECIAL.search(s, j)
        if m is None:
            raise LineSyntaxError(f"unterminated string value for field '{key}'")
        k = m.start()
        if k > j:
            parts.append(s[j:k])
        if s[k] == '"':
            value = "".join(parts)
            if _too_long(value):
                raise LineSyntaxError(f"string value of field '{key}' is longer than {MAX_VALUE_BYTES} bytes")
            return value, k + 1
        nxt = s[k + 1] if k + 1 < n else ""
        if nxt in ('"', "\\"):
            parts.append(nxt)
            j = k + 2
        else:
            parts.append("\\")
            j = k + 1


def _invalid_value(s: str, i: int, key: str) -> LineSyntaxError:
    m = _TOKEN_END.search(s, i)
    token = s[i:m.start() if m else len(s)]
    if not token:
        return LineSyntaxError(f"missing value for field '{key}'")
    return LineSyntaxError(f"invalid field value '{token}' for field '{key}'")


def _field_value(s: str, i: int, key: str) -> tuple[FieldType, object, int]:
    if i < len(s) and s[i] == '"':
        value, j = _string_value(s, i, key)
        return "string", value, j
    m = _INT.match(s, i)
    if m:
        v = int(m.group()[:-1])
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise LineSyntaxError(f"integer value '{m.group()}' of field '{key}' is out of range for int64")
        return "integer", v, m.end()
    m = _UINT.match(s, i)
    if m:
        v = int(m.group()[:-1])
        if v > _UINT64_MAX:
            raise LineSyntaxError(f"unsigned value '{m.group()}' of field '{key}' is out of range for uint64")
        return "uinteger", v, m.end()
    m = _FLOAT.match(s, i)
    if m:
        return "float", float(m.group()), m.end()
    m = _BOOL.match(s, i)
    if m:
        return "boolean", m.group()[0] in "tT", m.end()
    raise _invalid_value(s, i, key)


def parse_line(s: str) -> ParsedLine:
    """Parse one line (already trimmed of leading whitespace, non-empty, not a comment)."""
    n = len(s)
    measurement, i = _scan(s, 0, _MEASUREMENT_STOP, _MEASUREMENT_ESCAPES)
    if i == 0:
        if s[0] == "\x00":
            raise LineSyntaxError("measurement name must not contain a NUL character")
        raise LineSyntaxError(f"missing measurement name before {_context(s, 0)}")
    _check_name(measurement, "measurement name")

    tags: list[tuple[str, str]] = []
    if i < n and s[i] == ",":
        while True:
            i += 1
            key, j = _scan(s, i, _KEY_STOP, _ESCAPES)
            if j == i:
                raise LineSyntaxError(f"expected tag key, got {_context(s, i)}")
            _check_name(key, "tag key")
            if j >= n or s[j] != "=":
                raise LineSyntaxError(f"tag set malformed: no '=' after tag key '{key}'")
            value, k = _scan(s, j + 1, _TAG_VALUE_STOP, _ESCAPES)
            if k == j + 1:
                raise LineSyntaxError(f"expected value for tag '{key}', got {_context(s, k)}")
            _check_name(value, f"value of tag '{key}'")
            tags.append((key, value))
            i = k
            if i >= n or s[i] != ",":
                break

    if i >= n or s[i] != " ":
        if i < n and s[i] == "\x00":
            raise LineSyntaxError("measurement name must not contain a NUL character")
        raise LineSyntaxError(f"expected a space and the field set, got {_context(s, i)}")
    while i < n and s[i] == " ":
        i += 1

    fields: list[tuple[str, FieldType, object]] = []
    while True:
        key, j = _scan(s, i, _KEY_STOP, _ESCAPES)
        if j == i:
            if not fields:
                raise LineSyntaxError(f"no fields were provided, got {_context(s, i)}")
            raise LineSyntaxError(f"expected field key after ',', got {_context(s, i)}")
        _check_name(key, "field key")
        if j >= n or s[j] != "=":
            if not fields:
                raise LineSyntaxError(f"no fields were provided: expected key=value, got {_context(s, i)}")
            raise LineSyntaxError(f"missing '=' after field key '{key}'")
        ftype, value, k = _field_value(s, j + 1, key)
        if k < n and s[k] not in ", ":
            raise _invalid_value(s, j + 1, key)
        fields.append((key, ftype, value))
        i = k
        if i < n and s[i] == ",":
            i += 1
            continue
        break

    if i == n:
        return ParsedLine(measurement, tags, fields, None)
    while i < n and s[i] == " ":
        i += 1
    if i == n:
        raise LineSyntaxError("trailing whitespace after the field set (expected a timestamp)")
    m = _TIMESTAMP.match(s, i)
    end = s.find(" ", i)
    end = n if end < 0 else end
    if m is None or m.end() != end:
        raise LineSyntaxError(f"invalid timestamp '{s[i:end]}'")
    ts = int(m.group())
    if not _INT64_MIN <= ts <= _INT64_MAX:
        raise LineSyntaxError(f"timestamp '{m.group()}' is out of range for int64")
    i = end
    while i < n and s[i] == " ":
        i += 1
    if i != n:
        raise LineSyntaxError(f"unexpected content after the timestamp: {_context(s, i)}")
    return ParsedLine(measurement, tags, fields, ts)


# ---------------------------------------------------------------------------------------------
# Rules within one line (no catalog needed)


def line_rule_violation(tag_keys: list[str], field_types: list[tuple[str, FieldType]]) -> str | None:
    """The reason a line with these tag keys and (field key, type) pairs is rejected, if any.

    A field key may repeat with the same type (the last value wins, as in IOx); with another
    type it is rejected.
    """
    seen_tags: set[str] = set()
    for key in tag_keys:
        if key in seen_tags:
            return f"duplicate tag key '{key}'"
        seen_tags.add(key)
    if TIME_COLUMN in seen_tags:
        return f"tag key '{TIME_COLUMN}' is not allowed: the name is reserved for the timestamp"
    seen_fields: dict[str, FieldType] = {}
    for key, ftype in field_types:
        if key == TIME_COLUMN:
            return f"field key '{TIME_COLUMN}' is not allowed: the name is reserved for the timestamp"
        if key in seen_tags:
            return f"'{key}' is used as both a tag and a field"
        first = seen_fields.setdefault(key, ftype)
        if first != ftype:
            return f"field '{key}' is given twice with different types ({first} and {ftype})"
    return None


def apply_line_rules(parsed: ParsedLine) -> ParsedLine:
    """Check the rules within the line; merge repeated fields (the last value wins)."""
    reason = line_rule_violation([k for k, _ in parsed.tags], [(k, t) for k, t, _ in parsed.fields])
    if reason:
        raise LineSyntaxError(reason)
    if len({k for k, _, _ in parsed.fields}) != len(parsed.fields):
        merged: dict[str, tuple[str, FieldType, object]] = {}
        for item in parsed.fields:
            merged[item[0]] = item
        parsed.fields = list(merged.values())
    return parsed


def parse_text(piece: bytes) -> ParsedLine | None:
    """Parse one line's bytes: None for blank and comment lines; raises LineSyntaxError."""
    trimmed = trim_leading(piece)
    if not trimmed:
        return None
    try:
        text = trimmed.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = len(piece) - len(trimmed) + exc.start
        raise LineSyntaxError(f"invalid UTF-8 at byte {at} of the line") from None
    return apply_line_rules(parse_line(text))
