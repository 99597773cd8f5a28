"""The write router's checks (pure): parse and validate a request body before it is produced
to ``influent.writes``, and shape errors as InfluxDB 3 does."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from persist.catalog import TableSchema, schema_conflicts
from topics.line_protocol import LineError, ParseResult
from topics.validate import offered_columns, reject_rows

ORIGINAL_LINE_BYTES = 20


class BodyTooLarge(ValueError):
    pass


def read_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The decoded request body; gzip is inflated with the same size limit."""
    encoding = (encoding or "identity").lower()
    if encoding == "identity":
        if len(raw) > limit:
            raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes")
        return raw
    if encoding != "gzip":
        raise ValueError(f"unsupported content encoding '{encoding}'")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"invalid gzip body: {exc}") from exc
    if len(body) > limit:
        raise BodyTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes")
    return body


@dataclass
class CheckedWrite:
    errors: list[LineError]
    valid_lines: list[int]  # 1-based numbers of the lines that will be written

    def body_of_valid_lines(self, body: bytes) -> bytes:
        lines = body.split(b"\n")
        return b"\n".join(lines[n - 1] for n in self.valid_lines)


def check_write(result: ParseResult, schemas: dict[str, TableSchema], body: bytes) -> CheckedWrite:
    """Apply the catalog's known column types to a parsed body; collect every bad line."""
    errors = list(result.errors)
    valid: list[int] = []
    raw_lines: list[bytes] | None = None
    for table in result.tables.values():
        known = schemas.get(table.name)
        conflicts = schema_conflicts(offered_columns(table), known.columns) if known else {}
        kept = table
        if conflicts:
            raw_lines = raw_lines if raw_lines is not None else body.split(b"\n")
            kept, errs = reject_rows(table, conflicts, raw_lines)
            errors.extend(errs)
        if kept is not None:
            valid.extend(kept.lines.to_pylist())
    return CheckedWrite(sorted(errors, key=lambda e: e.line), sorted(valid))


def _short(original: str) -> str:
    data = original.encode()[:ORIGINAL_LINE_BYTES]
    return data.decode("utf-8", "ignore")


def line_error_json(err: LineError) -> dict:
    return {"error_message": err.reason, "line_number": err.line, "original_line": _short(err.original)}


def v3_error_body(errors: list[LineError], accept_partial: bool) -> dict:
    if accept_partial:
        return {"error": "partial write of line protocol occurred",
                "data": [line_error_json(e) for e in errors]}
    return {"error": "line protocol parsing error", "data": line_error_json(errors[0])}
