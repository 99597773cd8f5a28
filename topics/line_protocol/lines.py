"""Cutting a message into blocks of plain lines (vectorised) and lines for the exact parser.

Plain lines are single physical lines without backslash, tab, carriage return (other than the
one ending a CRLF line), NUL or the vectorised path's delimiter byte, and whose double quotes only
wrap string field values free of separators. Every other line is *hard*: hard lines are re-split
with the reference line-splitting rule (``grammar.logical_line_end``: a quoted or escaped
newline does not end a line) and go to the exact per-line parser.

Plain lines form one block; should their number of spaces differ (2: with timestamp, 1:
without), ``split_by_spaces`` regroups them, and lines with another number go to the exact
parser. A message whose lines are all plain and alike is taken whole, without cutting it into
lines first.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from topics.line_protocol.columnar import DELIMITER, value_bytes
from topics.line_protocol.grammar import logical_line_end, strip_cr

BOM = b"\xef\xbb\xbf"
_HARD_BYTES = (b"\\", b"\t", b"\r", b"\x00", DELIMITER.encode())
_ONLY_SPACES = bytes(b for b in range(256) if b not in b" \n")
_EMPTY = pa.scalar(b"", pa.binary())
_NEWLINE = pa.scalar(b"\n", pa.binary())
# A string field value free of separators, with what follows it (kept by the replacement).
_STRING_VALUE = r'="[^"= ,\\\n]*"([, \n]|$)'


@dataclass
class PlainBlock:
    buffer: pa.Buffer | bytes
    lines: pa.Array | None          # 1-based line numbers of the rows; None: 1, 2, 3, ...
    with_time: bool                 # 2 spaces per line (else 1)


@dataclass
class Plan:
    blocks: list[PlainBlock]
    fallback: list[tuple[int, bytes]]   # (line number, logical line text) for the exact parser


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _has_bom(data: bytes) -> bool:
    """A byte order mark anywhere (the CSV reader would drop one that starts its input)."""
    return b"\xef" in data and BOM in data   # the first test is a fast memchr


def uniform_plan(data: bytes) -> PlainBlock | None:
    """The whole message as one block, when cheap whole-message checks allow it (no byte that
    makes a line hard, quotes only around separator-free string values, no comment line).

    The CSV pass then verifies that every line has the same number of spaces; lines it cannot
    vouch for (blank, indented, bad cells) come back as fallback lines.
    """
    if not data or any(b in data for b in _HARD_BYTES):
        return None
    if b'"' in data and _has(_rest_after_strings(pa.array([data], pa.binary())), 0x22)[0].as_py():
        return None
    if b"#" in data and (data.startswith(b"#") or b"\n#" in data):
        return None
    if _has_bom(data) or not _is_utf8(data):
        return None
    end = data.find(b"\n")
    spaces = data.count(b" ", 0, end if end >= 0 else len(data))
    if spaces not in (1, 2):
        return None
    return PlainBlock(data, None, spaces == 2)


def _has(lines: pa.Array, byte: int) -> pa.Array:
    """Which lines hold the byte (a one-byte regex: RE2 scans with memchr, far faster here
    than ``match_substring``)."""
    return pc.match_substring_regex(lines, f"\\x{byte:02x}")


def without_crlf(data: bytes) -> bytes:
    """Drop the carriage return of CRLF line ends up front when nothing can make it content:
    without quotes or backslashes a newline always ends a line, so ``\\r\\n`` -> ``\\n`` is exactly
    the per-line rule (the CR before a line's newline is dropped)."""
    if b"\r" in data and b'"' not in data and b"\\" not in data:
        return pc.replace_substring(pa.array([data], pa.binary()), "\r\n", "\n")[0].as_py()
    return data


def general_plan(data: bytes) -> Plan:
    """Classify every physical line: plain lines form one block, the others go per line."""
    raw_lines = pc.split_pattern(pa.array([data], pa.binary()), b"\n").flatten()
    lines = raw_lines
    n = len(lines)
    hard = pa.repeat(False, n)
    if b"\r" in data:
        lines = pc.if_else(pc.ends_with(lines, "\r"), pc.binary_slice(lines, 0, -1), lines)
    for b in _HARD_BYTES:
        if b in data:
            hard = pc.or_(hard, _has(lines, b[0]))
    if _has_bom(data):
        hard = pc.or_(hard, pc.match_substring(lines, BOM.decode()))
    if b'"' in data:
        hard = pc.or_(hard, _unsafe_quotes(lines))
    if b" " in data:
        hard = pc.or_(hard, pc.starts_with(lines, " "))
    if not _is_utf8(data):
        hard = pc.or_(hard, pa.array([not _is_utf8(b) for b in lines.to_pylist()]))

    fallback: list[tuple[int, bytes]] = []
    consumed: list[int] = []
    hard_rows = pc.indices_nonzero(hard).to_pylist()
    if hard_rows:
        lengths = pc.add(pc.binary_length(raw_lines), 1)
        starts = pc.subtract(pc.cumulative_sum(lengths), lengths)
        last = -1
        for row in hard_rows:
            if row <= last:
                continue
            start = starts[row].as_py()
            end = logical_line_end(data, start)
            span = data.count(b"\n", start, end)
            last = row + span
            consumed.extend(range(row + 1, last + 1))
            fallback.append((row + 1, strip_cr(data[start:end])))

    skip = pc.or_(hard, pc.or_(pc.equal(pc.binary_length(lines), 0), pc.starts_with(lines, "#")))
    if consumed:
        inside = pc.is_in(pa.array(range(n), pa.int32()), value_set=pa.array(consumed, pa.int32()))
        skip = pc.or_(skip, inside)
    rows = pc.indices_nonzero(pc.invert(skip))
    blocks = []
    if len(rows):
        first = lines[rows[0].as_py()].as_py()
        joined = pc.binary_join_element_wise(pc.take(lines, rows), _EMPTY, _NEWLINE)
        blocks.append(PlainBlock(value_bytes(joined), pc.cast(pc.add(rows, 1), pa.int32()),
                                 first.count(b" ") == 2))
    return Plan(blocks, fallback)


def _unsafe_quotes(lines: pa.Array) -> pa.Array:
    """Lines with a double quote that is not part of a separator-free string field value.

    A quoted value right after ``=`` and before ``,``/space/end, holding no ``"``, ``=``, ``,``,
    space or backslash, opens and closes without changing how the line splits (and its cells
    split cleanly); remove those and look for a quote left over.
    """
    quoted = _has(lines, 0x22)
    if not pc.any(quoted).as_py():
        return quoted
    rest = _rest_after_strings(pc.filter(lines, quoted))
    return pc.replace_with_mask(quoted, quoted, _has(rest, 0x22))


def _rest_after_strings(texts: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(texts, _STRING_VALUE, r"=\1")


def split_by_spaces(block: PlainBlock) -> Plan:
    """Regroup a block whose lines differ in number of spaces: 2 (with timestamp), 1 (without);
    lines with any other number go to the exact parser."""
    lines = pc.split_pattern(pa.array([bytes(block.buffer)], pa.binary()), b"\n").flatten()[:len(block.lines)]
    counts = pc.split_pattern(pa.array([bytes(block.buffer).translate(None, _ONLY_SPACES)], pa.binary()),
                              b"\n").flatten()[:len(block.lines)]
    spaces = pc.binary_length(counts)
    blocks = []
    for count in (2, 1):
        rows = pc.indices_nonzero(pc.equal(spaces, count))
        if len(rows):
            joined = pc.binary_join_element_wise(pc.take(lines, rows), _EMPTY, _NEWLINE)
            blocks.append(PlainBlock(value_bytes(joined), pc.take(block.lines, rows), count == 2))
    odd = pc.indices_nonzero(pc.invert(pc.is_in(spaces, value_set=pa.array([1, 2], pa.int32()))))
    fallback = list(zip(pc.take(block.lines, odd).to_pylist(), pc.take(lines, odd).to_pylist()))
    return Plan(blocks, fallback)
