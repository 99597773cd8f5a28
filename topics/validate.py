"""Checks of parsed line protocol against the catalog (pure functions).

The parser enforces every rule that needs no catalog; these functions apply the catalog's
verdict (columns whose type is already fixed differently) to the parsed rows: a row that uses a
conflicting column is rejected with the reason, the other rows of the message are kept.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from influent.model import TAG
from topics.line_protocol import LineError, ParsedTable
from topics.wire import INTERNAL_COLUMNS


def offered_columns(table: ParsedTable) -> dict[str, str]:
    """Column name -> kind ("tag" or the LP field type) as this message uses them."""
    cols = {t: TAG for t in table.tags}
    cols.update(table.fields)
    return cols


def reserved_name_conflicts(table: ParsedTable) -> dict[str, str]:
    return {c: f"column name '{c}' is reserved for internal use"
            for c in offered_columns(table) if c in INTERNAL_COLUMNS}


def reject_rows(table: ParsedTable, conflicts: dict[str, str], lines: list[bytes]
                ) -> tuple[ParsedTable | None, list[LineError]]:
    """Drop the rows that use a conflicting column; return what is left and one error per row.

    ``lines`` are the raw input lines (0-based list), used to quote the original line.
    """
    if not conflicts:
        return table, []
    batch = table.batch
    reject = pa.repeat(pa.scalar(False), batch.num_rows)
    reasons = pa.nulls(batch.num_rows, pa.string())
    for column, reason in conflicts.items():
        used = pc.is_valid(batch.column(column))
        reasons = pc.if_else(pc.and_(used, pc.is_null(reasons)), reason, reasons)
        reject = pc.or_(reject, used)
    errors = [
        LineError(line=ln, original=_line_text(lines, ln), reason=reason)
        for ln, reason in zip(pc.filter(table.lines, reject).to_pylist(),
                              pc.filter(reasons, reject).to_pylist())
    ]
    keep = pc.invert(reject)
    if not pc.any(keep).as_py():
        return None, errors
    kept = batch.filter(keep)
    drop = [c for c in conflicts if c in kept.schema.names]
    if drop:  # a conflicting column is all-null in the kept rows
        kept = kept.drop_columns(drop)
    fields = {f: t for f, t in table.fields.items() if f not in drop}
    tags = [t for t in table.tags if t not in drop]
    return ParsedTable(name=table.name, batch=kept, tags=tags, fields=fields,
                       lines=pc.filter(table.lines, keep)), errors


def _line_text(lines: list[bytes], number: int) -> str:
    if 1 <= number <= len(lines):
        return lines[number - 1].rstrip(b"\r").decode("utf-8", "replace")
    return ""
