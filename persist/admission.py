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
writes, each with its own default time (lines without a timestamp), and makes one catalog round
trip for all of them, so a caller handling a batch of messages pays that cost once per batch.
With ``join=True`` (the ingest agent's batches of Kafka messages) writes of the same database,
precision and origin are parsed together in one pass and come back as one :class:`Admission`
that knows which write each line came from (:meth:`Admission.locate`); the per-write work
before the parse is a few bytes checks, so a batch of one-line messages costs about what one
large message does.

It lives in ``persist/`` because its last step is the catalog's verdict; the parser it uses is
in ``topics/``, and both ``agents/`` and ``query_api/`` import it.
"""
from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from influent.model import validate_db_name
from persist.catalog import TableSchema, schema_conflicts
from topics.line_protocol.assemble import PRECISIONS, precision_unit, truncate_default_time
from topics.line_protocol import LineError, ParsedTable
from topics.line_protocol.parser import parse_lp_undated
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


@dataclass(slots=True)
class WriteRequest:
    """One write as it arrived: an HTTP body or a Kafka message value (not frozen: the ingest
    agent makes one per Kafka record, and a frozen init costs several times more; treat it as
    read only)."""

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
    origin: str | None = None  # who wrote it (e.g. a trigger): writes of two origins never join


@dataclass(frozen=True)
class Refusal:
    """The whole write was refused before its lines were looked at."""

    reason: str
    too_large: bool = False
    undecodable: bool = False
    invalid_document: bool = False  # JSON that is not one of Telegraf's shapes


class ColumnCatalog(Protocol):
    """What admission asks the catalog: the worker's cache (agents/catalog_cache.py) answers
    from memory what it knows and asks Redis only about what is new."""

    async def claim_columns(self, claims: dict[tuple[str, str], dict[str, str]]
                            ) -> dict[tuple[str, str], TableSchema]: ...

    async def table_schema(self, db: str, table: str) -> TableSchema: ...


@dataclass
class Admission:
    """The verdict on one write, or with ``admit(join=True)`` on writes parsed together:
    accepted rows per table and every rejected line (numbered in ``body``, the writes' bodies
    joined by newlines; :meth:`locate` gives a line's write and its number there)."""

    request: WriteRequest  # the first write
    body: bytes = b""
    tables: list[ParsedTable] = field(default_factory=list)
    rejected: list[LineError] = field(default_factory=list)
    refusal: Refusal | None = None
    precision: str = "ns"  # of ``body`` (``ns`` once JSON is rendered)
    json_view: JsonAsLineProtocol | None = None
    members: list[int] = field(default_factory=lambda: [0])  # indices of its writes in admit()'s list
    starts: np.ndarray | None = None  # line of ``body`` where each member's line 1 is; None: [1]

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

    def member_of(self, lines: np.ndarray) -> np.ndarray:
        """For lines of ``body`` (int64), the position in :attr:`members` of each one's write."""
        if self.starts is None:
            return np.zeros(len(lines), dtype=np.int64)
        return np.maximum(np.searchsorted(self.starts, lines, side="right") - 1, 0)

    def locate(self, line: int) -> tuple[int, int]:
        """(index of the write in admit()'s list, line number within that write) of a line."""
        if self.starts is None:
            return self.members[0], line
        i = int(self.member_of(np.asarray([line], dtype=np.int64))[0])
        return self.members[i], line - int(self.starts[i]) + 1

    def accepted_body(self) -> bytes:
        """Line protocol holding exactly the accepted lines: the whole body when nothing was
        rejected, else the exact text of each accepted line, cut where the parser cut it (a
        newline inside a string value stays inside its line)."""
        if not self.rejected:
            return self.body
        keep = set(self.accepted_lines)
        return b"\n".join(text for number, text in split_lines(self.body) if number in keep)


@functools.lru_cache(maxsize=4096)
def _name_and_precision_error(database: str, precision: str,
                              allowed: frozenset[str]) -> str | None:
    return database_name_error(database) or precision_error(precision, allowed)


def _decoded(request: WriteRequest) -> tuple[bytes, Refusal | None]:
    """The checks before the lines: body, database name, precision."""
    if request.content_encoding is None and len(request.body) <= request.max_body_bytes:
        body = request.body  # the common case, without the decoder's string handling
    else:
        try:
            body = decode_body(request.body, request.content_encoding, request.max_body_bytes)
        except BodyTooLarge as exc:
            return b"", Refusal(str(exc), too_large=True)
        except UndecodableBody as exc:
            return b"", Refusal(str(exc), undecodable=True)
    reason = _name_and_precision_error(request.database, request.precision, request.precisions)
    return body, (Refusal(reason) if reason else None)


def _decode(request: WriteRequest, index: int) -> Admission:
    body, refusal = _decoded(request)
    return Admission(request, body, refusal=refusal, members=[index],
                     precision=request.precision.strip().lower() or "ns")


def _is_json(request: WriteRequest, body: bytes) -> bool:
    if request.body_format == "sniff":
        if request.content_type is None and body[:1] not in _MAY_START_JSON:
            return False  # the common case, decided without a header look-up
        return is_json_message({"content-type": request.content_type or ""}, body)
    return request.body_format == "json"


_MAY_START_JSON = frozenset((b"{", b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"))


def parses_alone(body: bytes) -> bool:
    """A write whose quotes might not close inside it is parsed on its own: a string field
    left open would otherwise run into the next write's lines."""
    return b'"' in body and (body.count(b'"') % 2 == 1 or b'\\"' in body)


#: A group of joined writes closes at this many bytes and the next write starts another: the
#: parse is fastest per line on a few MB (TSBS, 5 000-line messages: 1.9 us/line for groups
#: of ~4 MB, 2.4 for each 1.7 MB message alone, 2.6 for 14 MB joined, best of 6 runs).
JOIN_MAX_BYTES = 4 * 1024 * 1024


def _newlines(body: bytes) -> int:
    """``body.count(b"\\n")``; large bodies with numpy (4x faster on a 1.7 MB message)."""
    if len(body) < 65536:
        return body.count(b"\n")
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == 10))


def _admissions(requests: list[WriteRequest], join: bool) -> list[Admission]:
    """The admissions to parse: one per write, or with ``join`` one per group of writes of one
    database, precision, origin and all-or-nothing setting (bodies joined by newlines, in
    order, up to about :data:`JOIN_MAX_BYTES` per group); JSON, writes with an open quote and
    refused writes stay alone. A joined write costs a few bytes checks and list appends, no
    object of its own."""
    if not join:
        return [_decode(r, i) for i, r in enumerate(requests)]
    out: list[Admission] = []
    groups: dict[tuple, tuple[Admission, list[bytes]]] = {}
    sizes: dict[tuple, int] = {}
    closed: list[tuple[Admission, list[bytes]]] = []
    for i, request in enumerate(requests):
        body, refusal = _decoded(request)
        alone = refusal is not None or _is_json(request, body) or parses_alone(body)
        key = (request.database, request.precision, request.origin, request.all_or_nothing,
               i if alone else None)
        found = groups.get(key)
        if found is None:
            head = Admission(request, body, refusal=refusal, members=[i],
                             precision=request.precision.strip().lower() or "ns")
            groups[key] = found = (head, [body])
            sizes[key] = len(body)
            out.append(head)
        else:
            found[0].members.append(i)
            found[1].append(body)
            sizes[key] += len(body)
        if sizes[key] >= JOIN_MAX_BYTES and not alone:
            closed.append(groups.pop(key))
    for head, bodies in closed + list(groups.values()):
        if len(bodies) > 1:
            # each write's empty last line is left out: blank lines between writes would cost
            # the parser its one-pass plan for uniform lines (3x slower on one-line messages)
            ends = [b[-1:] == b"\n" for b in bodies]
            head.body = b"\n".join(memoryview(b)[:-1] if end else b
                                   for b, end in zip(bodies, ends))
            counts = np.fromiter((_newlines(b) + (not end) for b, end in zip(bodies, ends)),
                                 np.int64, len(bodies))
            head.starts = np.concatenate(([1], 1 + np.cumsum(counts[:-1])))
    return out


async def _render_json(admission: Admission, catalog: ColumnCatalog) -> None:
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


def _parse_lines(admission: Admission, requests: list[WriteRequest]) -> None:
    """Parse the body; a line without a timestamp takes its own write's default time (now
    when it has none), cut to the precision."""
    result = parse_lp_undated(admission.body, precision=admission.precision)
    admission.rejected = list(result.errors)
    admission.tables = list(result.tables.values())
    unit = precision_unit(admission.precision)
    now = time.time_ns()
    defaults = np.asarray([truncate_default_time(now if requests[i].default_time_ns is None
                                                 else requests[i].default_time_ns, unit)
                           for i in admission.members], dtype=np.int64)
    for n, table in enumerate(admission.tables):
        times = table.batch.column("time")
        if not times.null_count:
            continue
        if len(defaults) == 1:
            fill = pa.scalar(int(defaults[0]), pa.int64()).cast(times.type)
        else:
            lines = table.lines.to_numpy(zero_copy_only=False).astype(np.int64)
            fill = pa.array(defaults[admission.member_of(lines)], pa.int64()).view(times.type)
        batch = table.batch.set_column(table.batch.schema.get_field_index("time"), "time",
                                       pc.fill_null(times, fill))
        admission.tables[n] = ParsedTable(table.name, batch, table.tags, table.fields, table.lines)


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


async def admit(requests: list[WriteRequest], catalog: ColumnCatalog,
                join: bool = False) -> list[Admission]:
    """The verdict on each write, in order (with ``join``, on each group of writes parsed
    together, see :func:`_admissions`). New columns are claimed in the catalog (one round trip for
    all the writes), so an accepted row's columns exist with its kinds."""
    admissions = _admissions(requests, join)
    for admission in admissions:
        if admission.refusal is None and _is_json(admission.request, admission.body):
            await _render_json(admission, catalog)
        if admission.refusal is None:
            _parse_lines(admission, requests)
    claims = _claims(a for a in admissions if not (a.request.all_or_nothing and a.has_errors))
    schemas = await catalog.claim_columns(claims) if claims else {}
    for admission in admissions:
        if admission.tables:
            _apply_schemas(admission, schemas)
        if admission.json_view is not None:  # errors name the JSON elements
            admission.rejected = admission.json_view.in_json_terms(admission.rejected)
    return admissions
