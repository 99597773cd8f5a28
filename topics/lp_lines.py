"""Cutting a message into blocks of plain lines (vectorised) and lines for the exact parser.

Plain lines are single physical lines without backslash, tab, carriage return (other than the
one ending a CRLF line), NUL or the vectorised path's delimiter byte, and whose double quotes only
wrap string field values free of separators. Every other line is *hard*: hard lines are re-split
with the reference line-splitting rule (``lp_syntax.logical_line_end``: a quoted or escaped
newline does not end a line) and go to the exact per-line parser.

Plain lines are grouped by their number of spaces (2: with timestamp, 1: without); anything else
is odd and goes to the exact parser too. A message whose lines are all plain and alike is taken
whole, without cutting it into lines first.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from topics.lp_columnar import DELIMITER, value_bytes
from topics.lp_syntax import logical_line_end, strip_cr

BOM = b"\xef\xbb\xbf"
_HARD_BYTES = (b"\\", b"\t", b"\r", b"\x00", DELIMITER.encode())
_ONLY_SPACES = bytes(b for b in range(256) if b not in b" \n")
_EMPTY = pa.scalar(b"", pa.binary())
_NEWLINE = pa.scalar(b"\n", pa.binary())
# A line whose quotes all wrap separator-free string field values (it cannot continue on the
# next physical line, and its cells split cleanly at ',', '=' and spaces).
_FIELD = r'[^"= ,]+=(?:"[^"= ,\\]*"|[^"= ,]+)'
_SAFE_QUOTES = rf"^[^ ]+ {_FIELD}(?:,{_FIELD})*(?: [^ \"]+)?$"


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
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _has_bom(data: bytes) -> bool:
    """A byte order mark anywhere (the CSV reader would drop one that starts its input)."""
    return b"\xef" in data and BOM in data   # the first test is a fast memchr


def uniform_plan(data: bytes) -> PlainBlock | None:
    """The whole message as one block, when cheap whole-message checks allow it.

    The CSV pass then verifies that every line has the same number of spaces; lines it cannot
    vouch for (blank, indented, bad cells) come back as fallback lines.
    """
    if not data or any(b in data for b in _HARD_BYTES) or b'"' in data:
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


def general_plan(data: bytes) -> Plan:
    """Classify every physical line; build blocks of plain lines by number of spaces."""
    raw_lines = pc.split_pattern(pa.array([data], pa.binary()), b"\n").flatten()
    lines = raw_lines
    n = len(lines)
    hard = pa.repeat(False, n)
    if b"\r" in data:
        lines = pc.if_else(pc.ends_with(lines, "\r"), pc.binary_slice(lines, 0, -1), lines)
    for b in _HARD_BYTES:
        if b in data:
            hard = pc.or_(hard, pc.match_substring(lines, b.decode()))
    if _has_bom(data):
        hard = pc.or_(hard, pc.match_substring(lines, BOM.decode()))
    if b'"' in data:
        quoted = pc.match_substring(lines, '"')
        hard = pc.or_(hard, pc.and_(quoted, pc.invert(pc.match_substring_regex(lines, _SAFE_QUOTES))))
    if b" " in data:
        hard = pc.or_(hard, pc.starts_with(lines, " "))
    if not _is_utf8(data):
        hard = pc.or_(hard, pa.array([not _is_utf8(b) for b in lines.to_pylist()]))

    fallback: list[tuple[int, bytes]] = []
    consumed: list[int] = []
    hard_rows = pc.indices_nonzero(hard).to_pylist()
    if hard_rows:
        starts = pc.subtract(pc.cumulative_sum(pc.add(pc.binary_length(raw_lines), 1)),
                             pc.add(pc.binary_length(raw_lines), 1))
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
        skip = pc.or_(skip, pc.is_in(pa.array(range(n), pa.int32()), value_set=pa.array(consumed, pa.int32())))
    spaces_per_line = pc.split_pattern(pa.array([data.translate(None, _ONLY_SPACES)], pa.binary()),
                                       b"\n").flatten()
    spaces = pc.binary_length(spaces_per_line)
    plain = pc.invert(skip)

    blocks: list[PlainBlock] = []
    for count in (2, 1):
        rows = pc.indices_nonzero(pc.and_(plain, pc.equal(spaces, count)))
        if len(rows):
            joined = pc.binary_join_element_wise(pc.take(lines, rows), _EMPTY, _NEWLINE)
            numbers = pc.cast(pc.add(rows, 1), pa.int32())
            blocks.append(PlainBlock(value_bytes(joined), numbers, count == 2))
    odd = pc.indices_nonzero(pc.and_(plain, pc.invert(pc.is_in(spaces, value_set=pa.array([1, 2], pa.int32())))))
    if len(odd):
        fallback.extend(zip(pc.add(odd, 1).to_pylist(), pc.take(lines, odd).to_pylist()))
    fallback.sort(key=lambda item: item[0])
    return Plan(blocks, fallback)
