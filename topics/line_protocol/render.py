"""Arrow rows -> line protocol (pure, vectorised with ``pyarrow.compute``).

Used to forward accepted batches to subscribers: every row becomes one line with the same
escaping and value syntax as :func:`topics.line_protocol.serialize_point` (tags sorted by key,
nulls omitted, ``i``/``u`` suffixes, ``true``/``false``, ns timestamps), so ``parse_lp`` reads
the lines back to the same points. The per-row work happens in Arrow kernels; Python only
touches column names.
"""
from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from influent.model import TAG, field_type_of
from topics.line_protocol.parser import escape_name  # the rules serialize_point uses
from topics.wire import INTERNAL_COLUMNS

_TAG_SPECIALS = (",", "=", " ")


def _key(name: str) -> str:
    return escape_name(name, ",= ", "key")


def _plain(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def _escape(values: pa.Array, specials: tuple[str, ...]) -> pa.Array:
    out = pc.replace_substring(values, "\\", "\\\\")
    for c in specials:
        out = pc.replace_substring(out, c, "\\" + c)
    return out


def _field_values(col: pa.Array, kind: str) -> pa.Array:
    """Field values in line protocol syntax (null stays null)."""
    if kind == "float":
        return pc.cast(col, pa.string())  # shortest round-trip digits; "1" reads back as float
    if kind == "integer":
        return pc.binary_join_element_wise(pc.cast(col, pa.string()), "i", "")
    if kind == "uinteger":
        return pc.binary_join_element_wise(pc.cast(col, pa.string()), "u", "")
    if kind == "boolean":
        return pc.if_else(col, "true", "false")
    quoted = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', quoted, '"', "")



def render_lines(measurement: str, batch: pa.RecordBatch | pa.Table,
                 columns: Mapping[str, str]) -> pa.Array:
    """One line of line protocol per row (a string array, no newlines).

    ``columns`` maps column name -> catalog kind (``tag``, ``time``, or a field type); it tells
    tags from string fields, which share the Arrow type. Columns it does not know are fields
    of their Arrow type. Rows without any non-null field are rendered as null (not a line)."""
    n = batch.num_rows
    if n == 0:
        return pa.array([], pa.string())
    names = [c for c in batch.column_names if c not in INTERNAL_COLUMNS and c != "time"]
    tags = sorted(c for c in names if columns.get(c) == TAG)
    fields = [c for c in names if columns.get(c) != TAG]
    empty = pa.repeat(pa.scalar("", pa.string()), n)

    head = pa.repeat(pa.scalar(escape_name(measurement, ", ", "measurement"), pa.string()), n)
    for tag in tags:
        values = _escape(pc.cast(_plain(batch.column(tag)), pa.string()), _TAG_SPECIALS)
        piece = pc.binary_join_element_wise("," + _key(tag) + "=", values, "")
        # an empty tag value is no tag in line protocol
        piece = pc.if_else(pc.equal(values, ""), None, piece)
        head = pc.binary_join_element_wise(head, pc.fill_null(piece, ""), "")

    body = empty
    present = pa.repeat(pa.scalar(False, pa.bool_()), n)
    for name in fields:
        col = _plain(batch.column(name))
        kind = columns.get(name) or field_type_of(col.type)
        piece = pc.binary_join_element_wise("," + _key(name) + "=",
                                            _field_values(col, kind), "")
        present = pc.or_(present, pc.is_valid(col))
        body = pc.binary_join_element_wise(body, pc.fill_null(piece, ""), "")
    body = pc.utf8_slice_codeunits(body, 1)  # drop the leading comma

    parts = [head, " ", body]
    if "time" in batch.column_names:
        ns = pc.cast(pc.cast(_plain(batch.column("time")), pa.int64()), pa.string())
        parts.append(pc.fill_null(pc.binary_join_element_wise(" ", ns, ""), ""))
    line = pc.binary_join_element_wise(*parts, "")
    return pc.if_else(present, line, None)


def render_text(measurement: str, batch: pa.RecordBatch | pa.Table,
                columns: Mapping[str, str]) -> bytes:
    """The rows as one line protocol body (lines joined by newlines, no trailing newline)."""
    lines = render_lines(measurement, batch, columns).drop_null()
    if len(lines) == 0:
        return b""
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines),
                            "\n")
    return joined[0].as_py().encode()
