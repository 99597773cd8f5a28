"""InfluxQL management statements: ``CREATE DATABASE [WITH ...]``, ``DROP DATABASE``,
``DROP MEASUREMENT`` and the retention-aware ``SHOW RETENTION POLICIES``.

Parsing and answers follow InfluxDB 1.x (compared against a real 1.x in the tests). A database
has one retention period (InfluxDB 3's model), shown as the ``autogen`` policy; writes with
another ``rp`` land in database ``<db>/<rp>`` (InfluxDB 3's v1 mapping), so those databases
are listed as further policies of ``<db>``. The statements act through a
:class:`DatabaseAdmin` the query API implements over its catalog.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from query_api.influxql.lexer import DURATION, INTEGER, duration_ns
from query_api.influxql.results import Series, StatementResult

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
MIN_RETENTION_NS = HOUR_NS  # 1.x: "retention policy duration must be at least 1h0m0s"
KEYWORDS = ("DATABASE", "MEASUREMENT")


@dataclass(frozen=True)
class CreateDatabase:
    """``CREATE DATABASE name [WITH [DURATION d|INF] [REPLICATION n] [SHARD DURATION d]
    [NAME rp]]``; ``period_ns`` None means infinite."""

    name: str
    period_ns: int | None = None
    with_duration: bool = False       # DURATION was given (INF included)
    replication: int | None = None
    shard_duration_ns: int | None = None
    policy_name: str | None = None


@dataclass(frozen=True)
class DropDatabase:
    name: str


@dataclass(frozen=True)
class DropMeasurement:
    measurement: str


MANAGEMENT_STATEMENTS = (CreateDatabase, DropDatabase, DropMeasurement)


class DatabaseAdmin(Protocol):
    """What the statements change; methods raise ValueError with the message to report."""

    async def create_database(self, db: str, period_ns: int | None, with_duration: bool) -> None:
        """Create ``db``; when it exists, a given period must equal its own (ValueError)."""
        ...

    async def drop_database(self, db: str) -> None: ...

    async def drop_measurement(self, db: str, table: str) -> None: ...

    async def retention_policies(self, db: str) -> list[tuple[str, int | None]]:
        """(policy name, period ns or None) of ``db``: ``autogen`` first, then the ``db/rp``
        databases' policies; raises LookupError when ``db`` does not exist."""
        ...


# ---- parsing (called by the parser after CREATE/DROP, with DATABASE/MEASUREMENT next) ----


def parse_management(parser, verb: str):
    """The statement after ``CREATE``/``DROP`` when the next token is DATABASE or MEASUREMENT."""
    tok = parser.next()
    if verb == "CREATE" and tok.kind != "DATABASE":  # CREATE MEASUREMENT is no statement
        raise parser.error(tok, ["CONTINUOUS", "DATABASE", "USER", "RETENTION", "SUBSCRIPTION"])
    if tok.kind == "DATABASE":
        name = parser.parse_ident()
        if verb == "DROP":
            return DropDatabase(name)
        return _parse_create_options(parser, name)
    return DropMeasurement(parser.parse_ident())


def _parse_create_options(parser, name: str) -> CreateDatabase:
    if not parser.accept("WITH"):
        return CreateDatabase(name)
    period = replication = shard = policy = None
    seen = with_duration = False
    while True:
        if parser.accept("DURATION"):
            period = _parse_duration(parser, allow_inf=True)
            with_duration = True
        elif parser.accept("REPLICATION"):
            tok = parser.expect(INTEGER, ["integer"])
            replication = int(tok.lit)
            if replication < 1:
                raise parser._error_at("invalid value 0: must be 1 <= n <= 2147483647", tok)
        elif parser.accept("SHARD"):
            parser.expect("DURATION", ["DURATION"])
            shard = _parse_duration(parser, allow_inf=False)
        elif parser.accept("NAME"):
            policy = parser.parse_ident()
        else:
            if not seen:
                raise parser.error(parser.peek(), ["DURATION", "NAME", "REPLICATION", "SHARD"])
            return CreateDatabase(name, period, with_duration, replication, shard, policy)
        seen = True


def _parse_duration(parser, allow_inf: bool) -> int | None:
    tok = parser.next()
    if tok.kind == "INF" and allow_inf:
        return None
    if tok.kind == DURATION:
        return duration_ns(tok.lit)
    raise parser.error(tok, ["duration"])


# ---- execution -----------------------------------------------------------------------------


def go_duration(ns: int | None) -> str:
    """A duration as Go's ``time.Duration.String`` prints whole seconds (``24h0m0s``);
    None (infinite) prints ``0s`` as 1.x shows an infinite policy."""
    if not ns:
        return "0s"
    seconds, rest = divmod(ns, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    frac = f".{rest:09d}".rstrip("0") if rest else ""
    if hours:
        return f"{hours}h{minutes}m{seconds}{frac}s"
    if minutes:
        return f"{minutes}m{seconds}{frac}s"
    return f"{seconds}{frac}s"


def shard_group_duration(period_ns: int | None) -> int:
    """1.x's default shard group duration for a retention period."""
    if not period_ns:
        return 7 * DAY_NS
    if period_ns < 2 * DAY_NS:
        return HOUR_NS
    if period_ns < 180 * DAY_NS:
        return DAY_NS
    return 7 * DAY_NS


def validate_create(stmt: CreateDatabase) -> str | None:
    """The 1.x error of a CREATE DATABASE, or None (pure)."""
    if stmt.period_ns is not None and stmt.period_ns < MIN_RETENTION_NS:
        return "retention policy duration must be at least 1h0m0s"
    if stmt.policy_name is not None and stmt.policy_name != "autogen":
        return (f"retention policy name {stmt.policy_name!r} is not supported: a database has "
                f"one retention period, shown as autogen (write with rp={stmt.policy_name} to "
                f"use database \"{stmt.name}/{stmt.policy_name}\")")
    if stmt.replication not in (None, 1):
        return "replication factors other than 1 are not supported"
    return None


def retention_policy_rows(policies: list[tuple[str, int | None]]) -> pa.Table:
    """``SHOW RETENTION POLICIES`` columns as 1.x: name, duration, shardGroupDuration,
    replicaN, default (the first policy is the default)."""
    return pa.table({
        "name": pa.array([p[0] for p in policies], pa.string()),
        "duration": pa.array([go_duration(p[1]) for p in policies], pa.string()),
        "shardGroupDuration": pa.array([go_duration(shard_group_duration(p[1])) for p in policies],
                                       pa.string()),
        "replicaN": pa.array([1] * len(policies), pa.int64()),
        "default": pa.array([i == 0 for i in range(len(policies))], pa.bool_()),
    })


async def run_management(stmt, db: str | None, admin: DatabaseAdmin | None) -> StatementResult:
    """Run one management statement; errors become the statement's ``error``."""
    if admin is None:
        return StatementResult(error="statement is not supported: database management")
    try:
        if isinstance(stmt, CreateDatabase):
            reason = validate_create(stmt)
            if reason:
                return StatementResult(error=reason)
            await admin.create_database(stmt.name, stmt.period_ns, stmt.with_duration)
        elif isinstance(stmt, DropDatabase):
            await admin.drop_database(stmt.name)
        elif isinstance(stmt, DropMeasurement):
            if not db:
                return StatementResult(error="database name required")
            await admin.drop_measurement(db, stmt.measurement)
    except (ValueError, LookupError) as exc:
        return StatementResult(error=str(exc.args[0] if exc.args else exc))
    return StatementResult()


async def show_retention_policies(database: str | None, default_db: str | None,
                                  admin: DatabaseAdmin) -> StatementResult:
    db = database or default_db
    if not db:
        return StatementResult(error="database name required")
    try:
        policies = await admin.retention_policies(db)
    except LookupError:
        return StatementResult(error=f"database not found: {db}")
    table = retention_policy_rows(policies)
    return StatementResult([Series(None, table.column_names, table, has_time=False)])
