"""``SELECT ... INTO``: the statement's rows become line protocol written like any other write.

As in InfluxDB 1.x: each output row is a point at the row's time; the series' GROUP BY tags
are its tags, and so are the tag arguments of ``top``/``bottom``; every other output column is
a field (selected tags too); null values are left
out and rows without any value are not written; ``INTO :MEASUREMENT`` keeps each row's source
measurement. The answer is one row ``result | written`` at time 0.

Encoding is vectorised: one Arrow string join per series (the series' measurement and tags are
a constant prefix), never a Python loop over rows.
"""
from __future__ import annotations

from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql import ast
from query_api.influxql.results import Series, StatementResult


class WriteHook(Protocol):
    """Where INTO writes go (the query API produces them to the writes topic). Raises
    ValueError with the message the statement reports when the write is refused."""

    async def write_lines(self, db: str, lines: bytes) -> None: ...


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field_text(name: str, column: pa.Array) -> pa.Array | None:
    """``name=value`` per row (null where the value is null), or None for an all-null or
    unwritable column."""
    key = _escape_key(name) + "="
    t = column.type
    if pa.types.is_null(t):
        return None
    if pa.types.is_floating(t):
        finite = pc.is_finite(column)
        values = pc.if_else(finite, column, pa.scalar(None, t)).cast(pa.string())
        suffix = ""
    elif pa.types.is_unsigned_integer(t):
        values, suffix = column.cast(pa.string()), "u"
    elif pa.types.is_integer(t):
        values, suffix = column.cast(pa.string()), "i"
    elif pa.types.is_boolean(t):
        values, suffix = column.cast(pa.string()), ""
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        escaped = pc.replace_substring(pc.replace_substring(column.cast(pa.string()), "\\", "\\\\"),
                                       '"', '\\"')
        values = pc.binary_join_element_wise('"', escaped, '"', "")
        suffix = ""
    else:
        return None
    return pc.binary_join_element_wise(key, values, suffix, "")


def _escape_tag_values(column: pa.Array) -> pa.Array:
    text = column.cast(pa.string())
    for char in ("\\", ",", "=", " "):
        text = pc.replace_substring(text, char, "\\" + char)
    return text


def series_lines(s: Series, measurement: str, tag_columns: frozenset[str] = frozenset()
                 ) -> tuple[pa.Array, int]:
    """The series' rows as line protocol lines (no newline) and how many there are.
    ``tag_columns`` are output columns written as tags (top/bottom's tag arguments)."""
    tags = "".join(f",{_escape_key(k)}={_escape_key(v)}"
                   for k, v in sorted((s.tags or {}).items()) if v != "")
    prefix = _escape_measurement(measurement) + tags
    row_tags = []
    for i, name in enumerate(s.columns):
        if i and name in tag_columns:
            values = _escape_tag_values(s.table.column(i).combine_chunks())
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
            row_tags.append(pc.binary_join_element_wise(f",{_escape_key(name)}=", values, "")
                            .fill_null(""))
    if row_tags:
        prefix = pc.binary_join_element_wise(prefix, *row_tags, "")
    prefix = pc.binary_join_element_wise(prefix, " ", "") if row_tags else prefix + " "
    fields = [f for f in (_field_text(name, s.table.column(i).combine_chunks())
                          for i, name in enumerate(s.columns) if i > 0 and name not in tag_columns)
              if f is not None]
    if not fields or s.table.num_rows == 0:
        return pa.array([], pa.string()), 0
    # ",name=value" or "" per field, concatenated, then the leading comma dropped
    pieces = [pc.binary_join_element_wise(",", f, "").fill_null("") for f in fields]
    joined = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
    has_value = pc.not_equal(joined, "")
    joined = pc.utf8_slice_codeunits(joined, 1)
    times = s.table.column(0).combine_chunks().cast(pa.int64()).cast(pa.string())
    lines = pc.binary_join_element_wise(prefix, joined, " ", times, "")
    lines = lines.filter(has_value)
    return lines, len(lines)


def to_line_protocol(result: StatementResult, target: ast.IntoTarget,
                     tag_columns: frozenset[str] = frozenset()) -> tuple[bytes, int]:
    """All points of ``result`` as one line protocol body, and the number of points."""
    parts: list[pa.Array] = []
    count = 0
    for s in result.series:
        if not s.has_time:
            continue
        lines, n = series_lines(s, target.name or s.name or "", tag_columns)
        if n:
            parts.append(lines)
            count += n
    if not count:
        return b"", 0
    return _concatenated(pc.binary_join_element_wise(pa.concat_arrays(parts), "\n", "")), count


def _concatenated(lines: pa.Array) -> bytes:
    """The bytes of a string array's values back to back (its data buffer, no copy per row)."""
    lines = pa.concat_arrays([lines]).cast(pa.large_string())
    offsets = lines.buffers()[1]
    first = int.from_bytes(offsets.to_pybytes()[lines.offset * 8:lines.offset * 8 + 8], "little")
    last = int.from_bytes(offsets.to_pybytes()[(lines.offset + len(lines)) * 8:
                                               (lines.offset + len(lines)) * 8 + 8], "little")
    return lines.buffers()[2].to_pybytes()[first:last]


def written_result(count: int) -> StatementResult:
    table = pa.table({"time": pa.array([0], pa.int64()), "written": pa.array([count], pa.int64())})
    return StatementResult(series=[Series(name="result", columns=["time", "written"],
                                          table=table)])


def selector_tags(stmt: ast.SelectStatement) -> frozenset[str]:
    """Columns 1.x writes as tags: the tag arguments of top()/bottom()."""
    names = set()
    for f in stmt.fields:
        expr = ast.strip_parens(f.expr)
        if isinstance(expr, ast.Call) and expr.name in ("top", "bottom"):
            names.update(a.name for a in expr.args[1:-1] if isinstance(a, ast.VarRef))
    return frozenset(names)


async def run_into(stmt: ast.SelectStatement, db: str | None, source, now_ns: int,
                   rp: str | None, hook: WriteHook | None, run_select) -> StatementResult:
    """Run the SELECT, write its points into the target, answer how many were written."""
    from dataclasses import replace

    target = stmt.into
    assert target is not None
    if hook is None:
        return StatementResult(error="statement is not supported: SELECT INTO")
    result = await run_select(replace(stmt, into=None), db, source, now_ns, rp)
    if result.error is not None:
        return result
    to_db = target.database or db
    if not to_db:
        return StatementResult(error="database name required")
    if target.retention_policy and target.retention_policy not in ("autogen", "default"):
        to_db = f"{to_db}/{target.retention_policy}"
    body, count = to_line_protocol(result, target, selector_tags(stmt))
    if count:
        try:
            await hook.write_lines(to_db, body)
        except ValueError as exc:
            return StatementResult(error=str(exc))
    return written_result(count)
