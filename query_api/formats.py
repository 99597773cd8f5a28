"""Result rendering in InfluxDB 3's formats: json, jsonl, csv, pretty, parquet.

Timestamps print as InfluxDB 3 prints them: ISO 8601 without a zone, with 0, 3, 6 or 9
fractional digits (``1970-01-01T00:00:00.000000123``).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/jsonl",
    "csv": "text/csv",
    "pretty": "text/plain; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
ACCEPT_FORMATS = {
    "application/json": "json",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "text/csv": "csv",
    "text/plain": "pretty",
    "application/vnd.apache.parquet": "parquet",
    "*/*": "json",
}


def pick_format(format_param: str | None, accept: str | None) -> str:
    """The output format from ``format`` (wins) or the Accept header; ValueError if unknown."""
    if format_param:
        fmt = {"json_lines": "jsonl"}.get(format_param.lower(), format_param.lower())
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"invalid format '{format_param}': use json, jsonl, csv, pretty or parquet")
        return fmt
    if not accept:
        return "json"
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in ACCEPT_FORMATS:
            return ACCEPT_FORMATS[mime]
        if "text/html" in mime:
            return "json"
    raise ValueError(f"invalid mime type ({accept})")


def format_timestamps(arr: pa.Array) -> pa.Array:
    """Timestamp column → InfluxDB 3 text (vectorised)."""
    ts = arr.cast(pa.timestamp("ns"))
    whole = pc.floor_temporal(ts, unit="second")
    # Arrow's %S carries the fraction for ns timestamps: keep "YYYY-MM-DDTHH:MM:SS" only
    secs = pc.utf8_slice_codeunits(pc.strftime(whole, format="%Y-%m-%dT%H:%M:%S"), 0, 19)
    frac = pc.subtract(pc.cast(ts, pa.int64()), pc.cast(whole, pa.int64()))  # 0 <= frac < 1e9

    def digits(values: pa.Array, width: int) -> pa.Array:
        return pc.utf8_lpad(pc.cast(values, pa.string()), width=width, padding="0")

    is_zero = pc.equal(frac, 0)
    is_ms = pc.equal(pc.subtract(frac, pc.multiply(pc.divide(frac, 1_000_000), 1_000_000)), 0)
    is_us = pc.equal(pc.subtract(frac, pc.multiply(pc.divide(frac, 1_000), 1_000)), 0)
    tail = pc.case_when(
        pc.make_struct(is_zero, is_ms, is_us),
        pa.scalar(""),
        pc.binary_join_element_wise(".", digits(pc.divide(frac, 1_000_000), 3), ""),
        pc.binary_join_element_wise(".", digits(pc.divide(frac, 1_000), 6), ""),
        pc.binary_join_element_wise(".", digits(frac, 9), ""),
    )
    return pc.binary_join_element_wise(secs, tail, "")


def textual(table: pa.Table) -> pa.Table:
    """Timestamps as InfluxDB 3 text; dictionaries decoded; other types kept."""
    cols = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type):
            col = pa.chunked_array([format_timestamps(c) for c in col.chunks], pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _text_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    for batch in batches:
        if batch.num_rows:
            yield textual(pa.Table.from_batches([batch]))


def _json_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict]:
    for table in _text_batches(batches):
        for row in table.to_pylist():
            yield {k: v for k, v in row.items() if v is not None}


def _json_default(value):
    if isinstance(value, float):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _dump(row: dict) -> bytes:
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def render_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch], fmt: str) -> Iterator[bytes]:
    """The response body as chunks, produced batch by batch as the engine yields them, so large
    results stream instead of being built whole (``pretty`` needs every row for its widths)."""
    if fmt == "json":
        yield b"["
        first = True
        for row in _json_rows(batches):
            yield (b"" if first else b",") + _dump(row)
            first = False
        yield b"]"
    elif fmt == "jsonl":
        for row in _json_rows(batches):
            yield _dump(row) + b"\n"
    elif fmt == "csv":
        yield from _csv_chunks(schema, batches)
    elif fmt == "pretty":
        yield pretty(pa.Table.from_batches(list(batches), schema=schema)).encode()
    elif fmt == "parquet":
        yield from _parquet_chunks(schema, batches)
    else:
        raise ValueError(fmt)


def render(table: pa.Table, fmt: str) -> Iterator[bytes]:
    return render_batches(table.schema, table.to_batches(max_chunksize=10_000), fmt)


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are taken out after every write (for streaming)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def _parquet_chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Drain()
    wrote = False
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            wrote = True
            yield sink.take()
    if wrote or schema.names:
        yield sink.take()


def _csv_chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """RFC 4180 CSV, quoting only where needed (as InfluxDB 3 does)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(schema.names)
    for table in _text_batches(batches):
        cols = [c.to_pylist() for c in table.columns]
        writer.writerows(zip(*[[_csv_cell(v) for v in c] for c in cols]))
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.getvalue():
        yield out.getvalue().encode()


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def pretty(table: pa.Table) -> str:
    """An ASCII table like DataFusion's and the InfluxDB 3 CLI's ``pretty`` output."""
    t = textual(table)
    header = t.column_names
    rows = [["" if v is None else _cell(v) for v in row.values()] for row in t.to_pylist()]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt_row(cells: list[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths)) + "|"

    out = [line, fmt_row(header), line] + [fmt_row(r) for r in rows] + [line]
    return "\n".join(out) + "\n"


def _cell(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return f"{v:.1f}"
    return str(v)
