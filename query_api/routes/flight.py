"""Arrow Flight ``DoGet`` with InfluxDB 3's JSON ticket, so ``influxdb3-python`` and other Flight
clients query influent unchanged: ``{"database", "sql_query", "query_type": "sql"|"influxql",
"params"?}``; and Arrow Flight SQL (:mod:`query_api.flight_sql`) for SQL tools, told apart by
its ``google.protobuf.Any``-wrapped commands.

The Flight server runs on gRPC threads; each call runs the query on the API's event loop (the
same engine, catalog and pruning as HTTP) and streams the Arrow result back.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pyarrow as pa
import pyarrow.flight as flight

from persist.tokens import READ, Principal
from query_api import flight_sql_proto, sql_guard
from query_api.auth import TokenAuthority, credentials, reads_admin_tables
from query_api.engine import EngineSource, QueryEngine, QueryError, QueryStats
from query_api.flight_sql import FlightSqlService, TableSchemas, database_from_headers
from query_api.influxql.executor import execute_influxql
from query_api.influxql.results import to_table_rows
from query_api.metrics import ApiMetrics

QueryFn = Callable[[str, str, str, dict | None], Awaitable[pa.Table]]


class CallHeaders(flight.ServerMiddleware):
    """The call's gRPC headers, for the handlers (Flight SQL takes the database from them)."""

    def __init__(self, headers: dict[str, list[str]]):
        self.headers = {k.lower(): v for k, v in headers.items()}


class HeadersMiddlewareFactory(flight.ServerMiddlewareFactory):
    def start_call(self, info, headers):
        return CallHeaders(headers)


class CallAuth(flight.ServerMiddleware):
    """The call's principal (None while authentication is off)."""

    def __init__(self, principal: Principal | None):
        self.principal = principal


class TokenMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Requires ``authorization: Bearer|Token <token>`` (or Basic) when authentication is on:
    the same tokens and rules as HTTP (:mod:`query_api.auth`)."""

    def __init__(self, authority: TokenAuthority, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.authority = authority
        self.loop = loop

    def start_call(self, info, headers):
        lowered = {k.lower(): v for k, v in headers.items()}
        secret = credentials({"authorization": (lowered.get("authorization") or [""])[0]}, {})
        principal = asyncio.run_coroutine_threadsafe(self._resolve(secret), self.loop).result(10)
        if principal is False:
            raise flight.FlightUnauthenticatedError("unauthorized access")
        return CallAuth(principal)

    async def _resolve(self, secret: str | None) -> Principal | None | bool:
        if not await self.authority.enabled():
            return None
        return await self.authority.authenticate(secret) or False


def parse_ticket(raw: bytes) -> tuple[str, str, str, dict | None]:
    """(database, query, query type, params) from InfluxDB 3's JSON ticket (pure)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise flight.FlightServerError(f"invalid ticket: {exc}") from exc
    if not isinstance(data, dict) or not data.get("database") or not data.get("sql_query"):
        raise flight.FlightServerError("invalid ticket: 'database' and 'sql_query' are required")
    kind = str(data.get("query_type") or "sql").lower()
    if kind not in ("sql", "influxql"):
        raise flight.FlightServerError(f"invalid ticket: unknown query_type '{kind}'")
    return data["database"], data["sql_query"], kind, data.get("params")


class InfluentFlightServer(flight.FlightServerBase):
    def __init__(self, location: str, run_query: QueryFn, loop: asyncio.AbstractEventLoop,
                 authority: TokenAuthority, timeout: float = 300.0,
                 table_schemas: TableSchemas | None = None):
        super().__init__(location, middleware={"auth": TokenMiddlewareFactory(authority, loop),
                                               "headers": HeadersMiddlewareFactory()})
        self.run_query = run_query
        self.loop = loop
        self.timeout = timeout
        self.sql = FlightSqlService(lambda db, q, params: run_query(db, q, "sql", params),
                                    table_schemas, self.call) if table_schemas else None

    def call(self, coro):
        """Run a coroutine on the API's event loop; engine errors become Flight errors."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(self.timeout)
        except LookupError as exc:
            raise flight.FlightServerError(str(exc.args[0] if exc.args else exc)) from exc
        except TimeoutError as exc:  # the query limit (INFLUENT_QUERY_TIMEOUT)
            raise flight.FlightTimedOutError(str(exc)) from exc
        except ValueError as exc:  # bad SQL/InfluxQL: the engine's message
            raise flight.FlightServerError(str(exc)) from exc

    def do_get(self, context, ticket):
        command = self._flight_sql(ticket.ticket)
        if command is not None:
            database = self._database(context)
            self._require_read(context, *self.sql.target_of(*command, database))
            return flight.RecordBatchStream(self.sql.get(*command, database))
        db, query, kind, params = parse_ticket(ticket.ticket)
        self._require_read(context, db, query)
        return flight.RecordBatchStream(self.call(self.run_query(db, query, kind, params)))

    # ---- Flight SQL ---------------------------------------------------------------------------
    def get_flight_info(self, context, descriptor):
        name, cmd = self._command(descriptor)
        database = self._database(context)
        self._require_read(context, *self.sql.target_of(name, cmd, database))
        return self.sql.flight_info(name, cmd, descriptor, database)

    def get_schema(self, context, descriptor):
        name, cmd = self._command(descriptor)
        database = self._database(context)
        self._require_read(context, *self.sql.target_of(name, cmd, database))
        return flight.SchemaResult(self.sql.schema(name, cmd, database))

    def do_action(self, context, action):
        if self.sql is None:
            raise flight.FlightServerError(f"action {action.type} is not supported")
        body = action.body.to_pybytes() if action.body is not None else b""
        database = self._database(context)
        self._require_read(context, database)
        return self.sql.action(action.type, body, database)

    def list_actions(self, context):
        return [("CreatePreparedStatement", "Flight SQL: prepare a query"),
                ("ClosePreparedStatement", "Flight SQL: release a prepared statement")]

    def do_put(self, context, descriptor, reader, writer):
        name, cmd = self._command(descriptor)
        self._require_read(context, *self.sql.target_of(name, cmd, self._database(context)))
        self.sql.put(name, cmd, reader, writer)

    @staticmethod
    def _require_read(context, db: str | None, sql: str = "") -> None:
        """Refuse (PERMISSION_DENIED) a token that may not read ``db`` (or ``system.tokens``)."""
        auth = context.get_middleware("auth")
        principal = auth.principal if auth is not None else None
        if principal is None:
            return
        if db and not principal.allows(READ, db):
            raise flight.FlightUnauthorizedError(f"token may not read database {db}")
        if reads_admin_tables(sql) and not principal.is_admin:
            raise flight.FlightUnauthorizedError("only an admin token may read system.tokens")

    def _flight_sql(self, raw: bytes):
        if self.sql is None:
            return None
        try:
            return flight_sql_proto.unpack(raw)
        except flight_sql_proto.NotFlightSql:
            return None
        except ValueError as exc:
            raise flight.FlightServerError(str(exc)) from exc

    def _command(self, descriptor: flight.FlightDescriptor):
        command = self._flight_sql(descriptor.command or b"") if descriptor.command else None
        if command is None:
            raise flight.FlightServerError(
                "expected a Flight SQL command (or DoGet with InfluxDB 3's JSON ticket)")
        return command

    @staticmethod
    def _database(context) -> str | None:
        middleware = context.get_middleware("headers")
        try:
            return database_from_headers(middleware.headers if middleware else {})
        except ValueError as exc:
            raise flight.FlightServerError(str(exc)) from exc


def start_flight(run_query: QueryFn, loop: asyncio.AbstractEventLoop, authority: TokenAuthority,
                 table_schemas: TableSchemas | None = None) -> InfluentFlightServer:
    """A Flight server on a free loopback port (reached through the API's own port); with
    ``table_schemas`` it serves Flight SQL too."""
    server = InfluentFlightServer("grpc+tcp://127.0.0.1:0", run_query, loop, authority,
                                  table_schemas=table_schemas)
    deadline = time.monotonic() + 5
    while server.port == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return server


class FlightQueries:
    """The queries a Flight ``DoGet`` runs: the same engine as HTTP; InfluxQL rows as
    ``/api/v3/query_influxql`` returns them."""

    def __init__(self, engine: QueryEngine, metrics: ApiMetrics):
        self.engine = engine
        self.metrics = metrics

    async def __call__(self, db: str, q: str, kind: str, params: dict | None) -> pa.Table:
        stats = QueryStats()
        try:
            if kind == "sql":
                return await self.engine.sql(db, q, params, stats)
            await self.engine.require_database(db)
            body = await sql_guard.within_limit(
                execute_influxql(q, db, EngineSource(self.engine, stats),
                                 now_ns=time.time_ns(), epoch="ns", params=params),
                time.monotonic() + sql_guard.limits().timeout_s)
            results = body.get("results") or []
            error = body.get("error") or (results[0].get("error") if results else None)
            if error:
                raise QueryError(error)
            return to_table_rows(body)
        finally:
            self.metrics.observe(stats)
