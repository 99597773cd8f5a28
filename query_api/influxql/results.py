"""Shape statement results as InfluxDB answers them.

* :func:`statement_json` / :func:`query_json` -- the v1 ``/query`` body
  (``{"results":[{"statement_id":0,"series":[...]}]}``), times as RFC3339 or ``epoch`` ints;
* :func:`encode_json` -- bytes formatted like Go's ``encoding/json`` (``5`` not ``5.0``,
  ``1e-7``, ``\\u003c``), so responses match 1.x byte for byte;
* :func:`to_table_rows` -- the v3 ``/api/v3/query_influxql`` rows: ``iox::measurement``, then
  ``time``, the GROUP BY tags and the selected columns.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql.timeutil import format_rfc3339, parse_time_literal, to_epoch


@dataclass
class Series:
    """One series of a statement: ``table`` holds its columns in output order; when
    ``has_time`` the first column is the time as int64 ns."""

    name: str | None
    columns: list[str]
    table: pa.Table
    tags: dict[str, str] | None = None
    has_time: bool = True
    #: (table, first row) when ``table`` is a slice of a table that the statement's other
    #: series slice too: their columns are then encoded over that table at once
    parent: tuple[pa.Table, int] | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


class SlicedSeries(Series):
    """A series whose ``table`` is rows ``begin``.. of ``parent``, sliced only if something
    reads it (the encoder reads the parent: slicing hundreds of series costs more)."""

    def __init__(self, name: str | None, columns: list[str], parent: pa.Table, begin: int,
                 length: int, tags: dict[str, str] | None = None):
        self.name, self.columns, self.tags, self.has_time = name, columns, tags, True
        self.parent, self.length = (parent, begin), length

    def __getattr__(self, attr: str) -> Any:
        if attr != "table":
            raise AttributeError(attr)
        table = self.parent[0].slice(self.parent[1], self.length)
        self.table = table
        return table

    @property
    def num_rows(self) -> int:
        return self.length


@dataclass
class StatementResult:
    series: list[Series] = field(default_factory=list)
    error: str | None = None
    tz: str | None = None


def _whole(timed: list[Series]) -> pa.Table | None:
    """The table the series are consecutive slices of, when they cover one from its start."""
    parent = timed[0].parent
    if parent is None or parent[1] != 0:
        return None
    table, expect = parent[0], 0
    for s in timed:
        if s.parent is None or s.parent[0] is not table or s.parent[1] != expect:
            return None
        expect += s.num_rows
    return table if expect == table.num_rows else None


def _encoded_times(timed: list[Series], epoch: str | None, tz: str | None) -> pa.Array:
    """The times of the time-carrying series, all of them encoded in one vectorised pass
    (the windows of a GROUP BY time result repeat across series and are formatted once)."""
    whole = _whole(timed)
    if whole is not None:
        times = whole.column(0).combine_chunks().cast(pa.int64())
    else:
        times = pa.concat_arrays([a for s in timed for a in s.table.column(0).cast(
            pa.int64()).chunks] or [pa.array([], pa.int64())])
    return to_epoch(times, epoch) if epoch else format_rfc3339(times, tz)


def _time_values(timed: list[Series], encoded: pa.Array) -> list[pa.Array]:
    """Each series' slice of :func:`_encoded_times`."""
    out, begin = [], 0
    for s in timed:
        out.append(encoded.slice(begin, s.num_rows))
        begin += s.num_rows
    return out


def _rows(series: Series, times: pa.Array | None) -> list[list[Any]]:
    cols = [col.to_pylist() for col in series.table.columns]
    if times is not None:
        cols[0] = times.to_pylist()
    return [list(row) for row in zip(*cols)]


class ArrowRows(Sequence):
    """A series' ``values``: its Go JSON text made straight from the Arrow columns
    (:func:`series_json`), and the rows as Python lists only when someone reads them (the
    chunked and v3 endpoints, tests); compares equal to the list of rows."""

    def __init__(self, series: Series, times: pa.Array | None, text: str):
        self.series, self.times, self.text = series, times, text
        self._rows: list[list[Any]] | None = None

    @property
    def rows(self) -> list[list[Any]]:
        if self._rows is None:
            self._rows = _rows(self.series, self.times)
        return self._rows

    def __len__(self) -> int:
        return self.series.num_rows

    def __getitem__(self, index):
        return self.rows[index]

    def __iter__(self):
        return iter(self.rows)

    def __eq__(self, other: object) -> bool:
        return self.rows == (other.rows if isinstance(other, ArrowRows) else other)

    def __repr__(self) -> str:
        return repr(self.rows)


def statement_json(statement_id: int, result: StatementResult, epoch: str | None = None
                   ) -> dict[str, Any]:
    if result.error is not None:
        return {"statement_id": statement_id, "error": result.error}
    if not result.series:
        return {"statement_id": statement_id}
    timed = [s for s in result.series if s.has_time]
    encoded = _encoded_times(timed, epoch, result.tz) if timed else None
    times = iter(_time_values(timed, encoded) if timed else [])
    texts = iter(series_json(result.series, epoch, result.tz, encoded))
    out = []
    columns_text: dict[int, str] = {}  # the series of a statement share their column list
    for s in result.series:
        entry: dict[str, Any] = {}
        if s.name is not None:
            entry["name"] = s.name
        if s.tags is not None:
            entry["tags"] = {k: s.tags[k] for k in sorted(s.tags)}
        text = columns_text.get(id(s.columns))
        if text is None:
            text = columns_text[id(s.columns)] = _encoded_strings(s.columns)
        entry["columns"] = EncodedList(s.columns, text)
        stamps = next(times) if s.has_time else None
        text = next(texts) if s.has_time else None
        # 1.x omits "values" for an empty series (SHOW DATABASES with none)
        if text is not None and s.num_rows:
            entry["values"] = ArrowRows(s, stamps, text)
        elif s.num_rows:
            entry["values"] = _rows(s, stamps)
        out.append(entry)
    return {"statement_id": statement_id, "series": out}


def series_json(series: list[Series], epoch: str | None, tz: str | None,
                encoded: pa.Array | None = None) -> list[str | None]:
    """The JSON text of each time-carrying series' ``values``, computed column by column over
    all the series at once (a few Arrow kernels per column, not per series); None for every
    series when a column has no vectorised form (NaN, nested values: the per-value path
    raises or encodes those). ``encoded``: :func:`_encoded_times` when the caller has it."""
    timed = [s for s in series if s.has_time]
    if not timed:
        return []
    whole = _whole(timed)
    try:  # one table of every series' rows (zero-copy); series of other shapes: per value
        whole = whole if whole is not None else pa.concat_tables([s.table for s in timed])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return [None] * len(timed)
    columns: list[pa.Array] = []
    for j in range(whole.num_columns):
        column = whole.column(j).combine_chunks()
        if j == 0:
            if encoded is None:
                ns = column.cast(pa.int64())
                encoded = to_epoch(ns, epoch) if epoch else format_rfc3339(ns, tz)
            tokens = (encoded.cast(pa.string()) if epoch else
                      pc.binary_join_element_wise("\"", encoded, "\"", ""))
        else:
            tokens = arrow_tokens(column)
        if tokens is None:
            return [None] * len(timed)
        columns.append(tokens)
    rows = pc.binary_join_element_wise(*columns, ",").to_pylist() if columns else []
    out, begin = [], 0
    for s in timed:
        n = s.num_rows
        out.append("[[" + "],[".join(rows[begin:begin + n]) + "]]")
        begin += n
    return out


def arrow_tokens(column: pa.Array) -> pa.Array | None:
    """Go's JSON for each value of an Arrow column (``null`` for nulls), or None when the
    column's type has no vectorised form here."""
    t = column.type
    if pa.types.is_null(t):
        return pa.repeat(pa.scalar("null"), len(column))
    if pa.types.is_floating(t):
        return go_float_texts(column.cast(pa.float64()))
    if pa.types.is_integer(t):
        return column.cast(pa.string()).fill_null("null")
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false").fill_null("null")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        column = column.cast(pa.string())
        if not pc.any(pc.match_substring_regex(column, _NEEDS_ESCAPE)).as_py():
            return pc.binary_join_element_wise("\"", column, "\"", "").fill_null("null")
        distinct = pc.unique(column).drop_null()
        encoded = pa.array([_go_string(v) for v in distinct.to_pylist()], pa.string())
        return pc.take(encoded, pc.index_in(column, value_set=distinct)).fill_null("null")
    return None


def query_json(results: list[StatementResult], epoch: str | None = None) -> dict[str, Any]:
    return {"results": [statement_json(i, r, epoch) for i, r in enumerate(results)]}


# ---- Go-compatible JSON -------------------------------------------------------------------


def go_float(value: float) -> str:
    """A float64 as Go's encoding/json writes it: shortest digits, plain notation for
    1e-6 <= |v| < 1e21, else exponent form with ``e-7`` (not ``e-07``)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value}")
    text = repr(value)
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        plain = format(Decimal(text), "f")
        if "." in plain:
            plain = plain.rstrip("0").rstrip(".")
        return plain
    mantissa, _, exponent = format(Decimal(text), "e").partition("e")
    digits = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    exp = int(exponent)
    sign = "-" if exp < 0 else "+"
    return f"{digits}e{sign}{abs(exp):02d}" if exp >= 0 or abs(exp) >= 10 else f"{digits}e-{abs(exp)}"


_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}
_HTML_RE = re.compile("[<>&\u2028\u2029]")
#: characters Go's JSON writes escaped (RE2 syntax): strings without any are quoted as they are
_NEEDS_ESCAPE = r'["\\<>&\x{00}-\x{1f}\x{2028}\x{2029}]'


@lru_cache(maxsize=65536)
def _go_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return _HTML_RE.sub(lambda m: _HTML_ESCAPES[m.group(0)], text)


class EncodedList(list):
    """A list of strings that carries its Go JSON text (a statement's column names, written
    once per statement instead of once per series); compares and reads as a plain list."""

    def __init__(self, items, text: str):
        super().__init__(items)
        self.text = text


def _encoded_strings(items: list[str]) -> str:
    return "[" + ",".join(_go_string(str(v)) for v in items) + "]"


def go_float_texts(arr: pa.Array) -> pa.Array | None:
    """Go's JSON for a float64 array (``null`` for nulls) in one Arrow pass: Arrow's shortest
    round-trip digits are Go's, but it picks exponent notation by length where Go picks it by
    magnitude (below 1e-6 or from 1e21), so values where the two disagree are redone one by
    one. None when a value has no JSON form (NaN, inf): the slow path raises the error."""
    if pc.all(pc.is_finite(arr)).as_py() is False:
        return None
    texts = arr.cast(pa.string())
    magnitude = pc.abs(arr)
    go_exponent = pc.or_(pc.and_(pc.less(magnitude, 1e-6), pc.not_equal(magnitude, 0.0)),
                         pc.greater_equal(magnitude, 1e21))
    redo = pc.fill_null(pc.not_equal(pc.match_substring(texts, "e"), go_exponent), False)
    if pc.any(redo).as_py():
        fixed = [go_float(v) for v in pc.filter(arr, redo).to_pylist()]
        texts = pc.replace_with_mask(texts, redo, pa.array(fixed, pa.string()))
    return texts.fill_null("null")


def _float_tokens(column: tuple[Any, ...]) -> list[str] | None:
    """Go's JSON for a column of floats (None for null), or None when one has no JSON form."""
    texts = go_float_texts(pa.array(column, pa.float64()))
    return None if texts is None else texts.to_pylist()


def _column_tokens(column: tuple[Any, ...]) -> list[str] | None:
    """Go's JSON for one column of a series' values, or None when it mixes kinds."""
    kinds = {type(v) for v in column} - {type(None)}
    if kinds <= {float}:
        return _float_tokens(column)
    if kinds <= {int}:
        return ["null" if v is None else str(v) for v in column]
    if kinds <= {str}:
        memo: dict[str, str] = {}
        return ["null" if v is None else memo.get(v) or memo.setdefault(v, _go_string(v))
                for v in column]
    if kinds <= {bool}:
        return ["null" if v is None else ("true" if v else "false") for v in column]
    return None


def _encode_rows(rows: list[Any], out: list[str]) -> bool:
    """A series' ``values`` (equal-length rows), column by column: per-value encoding is the
    slow part of a large raw result. False when the fast path does not apply."""
    if not all(isinstance(r, list) for r in rows) or len({len(r) for r in rows}) != 1:
        return False
    tokens = []
    for column in zip(*rows):
        encoded = _column_tokens(column)
        if encoded is None:
            return False
        tokens.append(encoded)
    out.append("[" + ",".join("[" + ",".join(r) + "]" for r in zip(*tokens)) + "]")
    return True


def _encode(value: Any, out: list[str], indent: str | None = None, depth: int = 0) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, (ArrowRows, EncodedList)) and indent is None:
        out.append(value.text)
    elif isinstance(value, ArrowRows):
        _encode(value.rows, out, indent, depth)
    elif (indent is None and isinstance(value, list) and len(value) > 1
          and isinstance(value[0], list) and _encode_rows(value, out)):
        return
    elif isinstance(value, (dict, list, tuple)):
        is_dict = isinstance(value, dict)
        items = list(value.items()) if is_dict else list(value)
        out.append("{" if is_dict else "[")
        if items:
            pad = "\n" + indent * (depth + 1) if indent is not None else ""
            for i, item in enumerate(items):
                out.append(("," if i else "") + pad)
                if is_dict:
                    out.append(_go_string(str(item[0])) + (": " if indent is not None else ":"))
                    _encode(item[1], out, indent, depth + 1)
                else:
                    _encode(item, out, indent, depth + 1)
            if indent is not None:
                out.append("\n" + indent * depth)
        out.append("}" if is_dict else "]")
    else:
        out.append(_go_string(str(value)))


def encode_json(body: dict[str, Any], pretty: bool = False) -> bytes:
    """Serialise a response body the way InfluxDB 1.x writes it, trailing newline included
    (``pretty``: Go's MarshalIndent with four spaces)."""
    out: list[str] = []
    _encode(body, out, "    " if pretty else None)
    out.append("\n")
    return "".join(out).encode()


# ---- v3 rows ------------------------------------------------------------------------------


def to_table_rows(result: dict[str, Any]) -> pa.Table:
    """Rows of one statement's result (a ``statement_json`` dict, or a whole body with one
    statement) as the v3 ``query_influxql`` endpoint returns them: ``iox::measurement``,
    ``time`` (timestamp[ns]), GROUP BY tags, then the columns. Raises ValueError on a
    statement error. Pass results produced with ``epoch="ns"`` to keep nanosecond times."""
    if "results" in result:
        statements = result["results"]
        if len(statements) != 1:
            raise ValueError("expected exactly one statement result")
        result = statements[0]
    if "error" in result:
        raise ValueError(result["error"])
    names: list[str] = ["iox::measurement"]
    tag_names: list[str] = []
    value_names: list[str] = []
    for s in result.get("series", []):
        for t in sorted(s.get("tags") or {}):
            if t not in tag_names:
                tag_names.append(t)
        for c in s["columns"]:
            if c not in value_names and c not in tag_names:
                value_names.append(c)
    has_time = "time" in value_names
    if has_time:
        value_names.remove("time")
    ordered = names + (["time"] if has_time else []) + tag_names + value_names
    columns: dict[str, list[Any]] = {c: [] for c in ordered}
    for s in result.get("series", []):
        rows = s.get("values", [])
        index = {c: i for i, c in enumerate(s["columns"])}
        tags = s.get("tags") or {}
        columns["iox::measurement"].extend([s.get("name")] * len(rows))
        for c in ordered[1:]:
            if c in index:
                i = index[c]
                columns[c].extend(row[i] for row in rows)
            elif c in tags:
                columns[c].extend([tags[c]] * len(rows))
            else:
                columns[c].extend([None] * len(rows))
    arrays = []
    for c in ordered:
        values = columns[c]
        if c == "time":
            ns = [v if isinstance(v, int) or v is None else parse_time_literal(v) for v in values]
            arrays.append(pa.array(ns, pa.int64()).cast(pa.timestamp("ns")))
        elif c == "iox::measurement" or c in tag_names:
            arrays.append(pa.array(values, pa.string()))
        else:
            arrays.append(_typed(values))
    return pa.table(arrays, names=ordered)


def _typed(values: list[Any]) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int, float}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if len(kinds) > 1:
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array(values)
