"""Write admission: the one place that decides which lines of a write are accepted.

Every entry point -- the HTTP write endpoints (v1, v2, v3), the ingest agent reading
``influent.writes``, and writes made by triggers -- calls :func:`admit` and only differs in how
it reports the verdict (an HTTP status and body, records on ``influent.rejected``, an
exception or a log line for a plugin). Because the HTTP router and the ingest agent run the same
checks, and the router claims new columns in the catalog before it answers, what a client is
told was written is exactly what the ingest agent accepts and what becomes queryable.

The checks, in order: decode (gzip, with a limit on the inflated size; Telegraf JSON rendered
to line protocol, topics/telegraf_json.py), database name, precision, line protocol parse, reserved column names, column kinds against the catalog (new
columns are claimed first writer wins, atomically in Redis). :func:`admit` takes a list of
writes and makes one catalog round trip for all of them, so a caller handling a batch of
messages pays that cost once per batch.

It lives in ``persist/`` because its last step is the catalog's verdict; the parser it uses is
in ``topics/``, and both ``agents/`` and ``query_api/`` import it.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from influent.model import validate_db_name
from persist.catalog import Catalog, TableSchema, schema_conflicts
from topics.line_protocol.assemble import PRECISIONS
from topics.line_protocol import LineError, ParsedTable, parse_lp
from topics.line_protocol.grammar import split_lines
from topics.telegraf_json import JsonAsLineProtocol, is_json_message, read_document, to_line_protocol
from topics.validate import offered_columns, reject_rows, reserved_name_conflicts

#: Precision names each HTTP API accepts (the parser knows all of them; Kafka takes any).
V3_PRECISIONS = frozenset({"auto", "s", "second", "ms", "millisecond", "us", "u", "microsecond",
                           "ns", "n", "nanosecond"})
V1_PRECISIONS = frozenset({"", "ns", "n", "u", "us", "ms", "s", "m", "h"})
V2_PRECISIONS = frozenset({"ns", "us", "ms", "s"})
ANY_PRECISION = frozenset(PRECISIONS)


class BodyTooLarge(ValueError):
    """The (decompressed) body is over the limit."""


class UndecodableBody(ValueError):
    """An unknown content encoding or a corrupt gzip stream."""


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as line protocol: gzip is inflated, never past ``limit`` bytes (a gzip bomb
    stops at the limit instead of filling memory)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
        return raw
    if encoding != "gzip":
        raise UndecodableBody(f"unsupported content encoding '{encoding}'")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise UndecodableBody(f"invalid gzip body: {exc}") from exc
    if len(body) > limit:
        raise BodyTooLarge(f"the decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise UndecodableBody("invalid gzip body: the stream is truncated")
    return body


def database_name_error(name: str) -> str | None:
    """Why a write's database name is invalid, or None. ``db/rp`` (the InfluxDB 3 name of a
    v1 database + retention policy) is valid when both parts are."""
    db, slash, rp = name.partition("/")
    return validate_db_name(db) or (validate_db_name(rp) if slash else None)


def v1_database(db: str, rp: str | None) -> str:
    """InfluxDB 3's mapping of v1 ``db`` + ``rp``: the database ``db/rp``, or ``db`` alone for
    an empty rp, ``autogen`` or ``default``."""
    return f"{db}/{rp}" if rp and rp not in ("autogen", "default") else db


def precision_error(precision: str, allowed: frozenset[str] = ANY_PRECISION) -> str | None:
    if precision.strip().lower() in allowed:
        return None
    names = ", ".join(sorted(p for p in allowed if p)) or "none"
    return f"invalid precision '{precision}': expected one of {names}"


@dataclass(frozen=True)
class WriteRequest:
    """One write as it arrived: an HTTP body or a Kafka message value."""

    body: bytes
    database: str
    precision: str = "ns"
    content_encoding: str | None = None
    default_time_ns: int | None = None  # time of lines without a timestamp; None: now
    max_body_bytes: int = 10 * 1024 * 1024
    precisions: frozenset[str] = ANY_PRECISION
    all_or_nothing: bool = False  # a write refused for one bad line claims no columns
    #: "lp", "json" (Telegraf JSON), or "sniff": JSON when ``content_type`` says so or, without
    #: one, when the body starts with ``{`` (a writes-topic message)
    body_format: str = "lp"
    content_type: str | None = None
    precision_given: bool = True  # False: JSON timestamps take "auto" (Telegraf sets none)


@dataclass(frozen=True)
class Refusal:
    """The whole write was refused before its lines were looked at."""

    reason: str
    too_large: bool = False
    undecodable: bool = False
    invalid_document: bool = False  # JSON that is not one of Telegraf's shapes


@dataclass
class Admission:
    """The verdict on one write: accepted rows per table and every rejected line."""

    request: WriteRequest
    body: bytes = b""
    tables: list[ParsedTable] = field(default_factory=list)
    rejected: list[LineError] = field(default_factory=list)
    refusal: Refusal | None = None
    precision: str = "ns"  # of ``body`` (``ns`` once JSON is rendered)
    json_view: JsonAsLineProtocol | None = None

    @property
    def rows(self) -> int:
        return sum(t.batch.num_rows for t in self.tables)

    @property
    def accepted_lines(self) -> list[int]:
        """1-based numbers of the input lines whose rows were accepted."""
        return sorted(n for t in self.tables for n in t.lines.to_pylist())

    @property
    def has_errors(self) -> bool:
        return bool(self.rejected or (self.json_view is not None and self.json_view.errors))

    @property
    def empty(self) -> bool:
        return self.refusal is None and not self.tables and not self.rejected

    def accepted_body(self) -> bytes:
        """Line protocol holding exactly the accepted lines: the whole body when nothing was
        rejected, else the exact text of each accepted line, cut where the parser cut it (a
        newline inside a string value stays inside its line)."""
        if not self.rejected:
            return self.body
        keep = set(self.accepted_lines)
        return b"\n".join(text for number, text in split_lines(self.body) if number in keep)


def _decode(request: WriteRequest) -> Admission:
    """The checks before the lines: body, database name, precision."""
    admission = Admission(request, precision=request.precision.strip().lower() or "ns")
    try:
        admission.body = decode_body(request.body, request.content_encoding,
                                     request.max_body_bytes)
    except BodyTooLarge as exc:
        admission.refusal = Refusal(str(exc), too_large=True)
        return admission
    except UndecodableBody as exc:
        admission.refusal = Refusal(str(exc), undecodable=True)
        return admission
    reason = (database_name_error(request.database)
              or precision_error(request.precision, request.precisions))
    if reason:
        admission.refusal = Refusal(reason)
    return admission


def _is_json(admission: Admission) -> bool:
    request = admission.request
    if request.body_format == "sniff":
        return is_json_message({"content-type": request.content_type or ""}, admission.body)
    return request.body_format == "json"


async def _render_json(admission: Admission, catalog: Catalog) -> None:
    """Telegraf JSON as line protocol with ns timestamps; integral numbers stay integers
    where the catalog holds the field as one."""
    try:
        doc = read_document(admission.body)
    except ValueError as exc:
        admission.refusal = Refusal(str(exc), invalid_document=True)
        return
    db = admission.request.database
    known = {name: (await catalog.table_schema(db, name)).fields for name in doc.names}
    precision = admission.precision if admission.request.precision_given else "auto"
    admission.json_view = to_line_protocol(doc, precision, known)
    admission.body, admission.precision = admission.json_view.body, "ns"


def _parse_lines(admission: Admission) -> None:
    request = admission.request
    default = time.time_ns() if request.default_time_ns is None else request.default_time_ns
    result = parse_lp(admission.body, precision=admission.precision, default_time=default)
    admission.rejected = list(result.errors)
    admission.tables = list(result.tables.values())


def _claims(admissions: Iterable[Admission]) -> dict[tuple[str, str], dict[str, str]]:
    """Columns each write offers, per (database, table), reserved names left out; the first
    write to offer a column proposes its kind."""
    claims: dict[tuple[str, str], dict[str, str]] = {}
    for admission in admissions:
        for table in admission.tables:
            reserved = reserved_name_conflicts(table)
            wanted = claims.setdefault((admission.request.database, table.name), {})
            for column, kind in offered_columns(table).items():
                if column not in reserved:
                    wanted.setdefault(column, kind)
    return claims


def _apply_schemas(admission: Admission, schemas: dict[tuple[str, str], TableSchema]) -> None:
    """Reject the rows that use a reserved name or a column of another kind."""
    kept: list[ParsedTable] = []
    for table in admission.tables:
        conflicts = reserved_name_conflicts(table)
        known = schemas.get((admission.request.database, table.name), TableSchema({}))
        conflicts.update(schema_conflicts(offered_columns(table), known.columns))
        remaining: ParsedTable | None = table
        if conflicts:
            remaining, errors = reject_rows(table, conflicts, _Lines(admission.body))
            admission.rejected.extend(errors)
        if remaining is not None:
            kept.append(remaining)
    admission.tables = kept
    admission.rejected.sort(key=lambda e: e.line)


class _Lines:
    """The input's lines by 0-based index, as ``reject_rows`` quotes them (built on use)."""

    def __init__(self, body: bytes):
        self._body = body
        self._lines: dict[int, bytes] | None = None

    def _all(self) -> dict[int, bytes]:
        if self._lines is None:
            self._lines = dict(split_lines(self._body))
        return self._lines

    def __len__(self) -> int:
        return self._body.count(b"\n") + 1

    def __getitem__(self, index: int) -> bytes:
        return self._all().get(index + 1, b"")


async def admit(requests: list[WriteRequest], catalog: Catalog) -> list[Admission]:
    """The verdict on each write, in order. New columns are claimed in the catalog (one round
    trip for all the writes), so an accepted row's columns exist with its kinds."""
    admissions = [_decode(r) for r in requests]
    for admission in admissions:
        if admission.refusal is None and _is_json(admission):
            await _render_json(admission, catalog)
        if admission.refusal is None:
            _parse_lines(admission)
    claims = _claims(a for a in admissions if not (a.request.all_or_nothing and a.has_errors))
    schemas = await catalog.claim_columns(claims) if claims else {}
    for admission in admissions:
        if admission.tables:
            _apply_schemas(admission, schemas)
        if admission.json_view is not None:  # errors name the JSON elements
            admission.rejected = admission.json_view.in_json_terms(admission.rejected)
    return admissions
