"""Arrow Flight ``DoGet`` with InfluxDB 3's JSON ticket, so ``influxdb3-python`` and other Flight
clients query influent unchanged: ``{"database", "sql_query", "query_type": "sql"|"influxql",
"params"?}``.

The Flight server runs on gRPC threads; each call runs the query on the API's event loop (the
same engine, catalog and pruning as HTTP) and streams the Arrow result back.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable

import pyarrow as pa
import pyarrow.flight as flight

from query_api import sql_guard
from query_api.engine import EngineSource, QueryEngine, QueryError, QueryStats
from query_api.influxql.executor import execute_influxql
from query_api.influxql.results import to_table_rows
from query_api.metrics import ApiMetrics

QueryFn = Callable[[str, str, str, dict | None], Awaitable[pa.Table]]


class TokenMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Requires ``authorization: Bearer|Token <token>`` when a token is configured."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def start_call(self, info, headers):
        if not self.token:
            return None
        values = headers.get("authorization") or headers.get("Authorization") or []
        for value in values:
            scheme, _, offered = value.partition(" ")
            if scheme.lower() in ("bearer", "token") and hmac.compare_digest(
                    offered.strip().encode(), self.token.encode()):
                return None
        raise flight.FlightUnauthenticatedError("unauthorized access")


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
                 token: str = "", timeout: float = 300.0):
        super().__init__(location, middleware={"auth": TokenMiddlewareFactory(token)})
        self.run_query = run_query
        self.loop = loop
        self.timeout = timeout

    def do_get(self, context, ticket):
        db, query, kind, params = parse_ticket(ticket.ticket)
        future = asyncio.run_coroutine_threadsafe(self.run_query(db, query, kind, params), self.loop)
        try:
            table = future.result(self.timeout)
        except LookupError as exc:
            raise flight.FlightServerError(f"database not found: {db}") from exc
        except TimeoutError as exc:  # the query limit (INFLUENT_QUERY_TIMEOUT)
            raise flight.FlightTimedOutError(str(exc)) from exc
        except ValueError as exc:  # bad SQL/InfluxQL: the engine's message
            raise flight.FlightServerError(str(exc)) from exc
        return flight.RecordBatchStream(table)


def start_flight(run_query: QueryFn, loop: asyncio.AbstractEventLoop, token: str
                 ) -> InfluentFlightServer:
    """A Flight server on a free loopback port (reached through the API's own port)."""
    server = InfluentFlightServer("grpc+tcp://127.0.0.1:0", run_query, loop, token)
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
