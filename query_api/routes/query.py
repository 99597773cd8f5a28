"""Query routes: SQL (``/api/v3/query_sql``), InfluxQL the InfluxDB 3 way
(``/api/v3/query_influxql``) and the InfluxDB 1.x way (``/query``, with ``chunked=true``)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from influent.config import Settings
from query_api import sql_guard
from query_api.database_admin import CatalogDatabaseAdmin
from query_api.engine import DatabaseNotFound, EngineSource, QueryError, QueryStats
from query_api.formats import CONTENT_TYPES, pick_format, render, render_batches
from query_api.influxql.executor import execute_influxql, query_target
from query_api.influxql.results import encode_json, to_table_rows
from query_api.influxql_hooks import influxql_hooks
from query_api.metrics import ApiMetrics
from query_api.routes.common import query_args
from query_api.routes.engine import subscription_statements
from query_api.sql_guard import QueryTimeout
from query_api.routes.lifecycle import deletes_of

VERSION = "0.1.0"


class QueryRoutes:
    def __init__(self, settings: Settings, metrics: ApiMetrics):
        self.settings = settings
        self.metrics = metrics

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/api/v3/query_sql", self.query_sql, methods=["GET", "POST"])
        router.add_api_route("/query", self.query_v1, methods=["GET", "POST"])
        router.add_api_route("/api/v3/query_influxql", self.query_influxql, methods=["GET", "POST"])
        return router

    async def query_sql(self, request: Request) -> Response:
        args = await query_args(request)
        db, q = args.get("db"), args.get("q")
        if not db or not q:
            return JSONResponse({"error": "missing query parameters 'db' and 'q'"}, status_code=400)
        try:
            fmt = pick_format(args.get("format"), request.headers.get("accept"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        params = args.get("params")
        if isinstance(params, str):
            try:
                params = orjson.loads(params)
            except orjson.JSONDecodeError:
                return JSONResponse({"error": "'params' must be a JSON object"}, status_code=400)
        if params is not None and not isinstance(params, dict):
            return JSONResponse({"error": "'params' must be a JSON object"}, status_code=400)
        stats = QueryStats()
        try:
            schema, batches = await request.app.state.engine.sql_stream(db, q, params or None, stats)
        except DatabaseNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except QueryTimeout as exc:
            return JSONResponse({"error": str(exc)}, status_code=504)
        except QueryError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        finally:
            self.metrics.observe(stats)
        return StreamingResponse(render_batches(schema, batches, fmt), media_type=CONTENT_TYPES[fmt],
                                 headers={"X-Influent-Files-Read": str(stats.files_read),
                                          "X-Influent-Files-Pruned": str(stats.files_pruned)})

    async def influxql(self, request: Request, db: str | None, q: str, epoch: str | None,
                       rp: str | None = None, params: Any = None,
                       writable: bool = False) -> tuple[dict, QueryStats]:
        stats = QueryStats()
        if isinstance(params, str):
            try:
                params = orjson.loads(params)
            except orjson.JSONDecodeError:
                return {"error": "error parsing query parameters: params must be JSON"}, stats
        if params is not None and not isinstance(params, dict):
            return {"error": "error parsing query parameters: params must be a JSON object"}, stats
        app = request.app
        started = time.time()
        try:
            body = await sql_guard.within_limit(
                execute_influxql(q, db or None, EngineSource(app.state.engine, stats),
                                 now_ns=time.time_ns(), epoch=epoch, rp=rp, params=params or None,
                                 subscriptions=subscription_statements(app, self.settings),
                                 admin=CatalogDatabaseAdmin(app.state.catalog, app.state.engine.store),
                                 deletes=deletes_of(app) if writable else None,
                                 **(influxql_hooks(app, self.settings) if writable else {})),
                time.monotonic() + self.settings.query_timeout)
        except QueryTimeout as exc:
            return {"error": str(exc)}, stats
        finally:
            self.metrics.observe(stats)
        answered = sum(len(s.get("values") or []) for r in body.get("results") or []
                       for s in r.get("series") or [])
        app.state.engine.recent.record(db or "", "influxql", q, started, answered, body.get("error"))
        return body, stats

    async def query_v1(self, request: Request) -> Response:
        """InfluxDB 1.x ``/query``: results shaped exactly as 1.x shapes them."""
        args = await query_args(request)
        q = args.get("q")
        if not q:
            return JSONResponse({"error": "missing required parameter \"q\""}, status_code=400)
        body, _ = await self.influxql(request, args.get("db"), q, args.get("epoch"), args.get("rp"),
                                      args.get("params"), writable=True)
        status = 400 if "error" in body and "results" not in body else 200
        if status == 400 and body["error"].startswith(sql_guard.TIMEOUT_PREFIX):
            status = 504
        headers = {"X-Influxdb-Version": VERSION}
        if str(args.get("chunked", "")).lower() == "true" and status == 200:
            try:
                size = max(1, int(args.get("chunk_size") or 10_000))
            except ValueError:
                size = 10_000
            lines = (encode_json(part) for part in chunked_results(body, size))
            return StreamingResponse(lines, media_type="application/json", headers=headers)
        pretty = str(args.get("pretty", "")).lower() == "true"
        return Response(encode_json(body, pretty), status_code=status, media_type="application/json",
                        headers=headers)

    async def query_influxql(self, request: Request) -> Response:
        """InfluxDB 3 InfluxQL endpoint: one statement, rows with an ``iox::measurement`` column."""
        args = await query_args(request)
        q, db = args.get("q"), args.get("db")
        if not q:
            return JSONResponse({"error": "missing query parameter 'q'"}, status_code=400)
        try:
            fmt = pick_format(args.get("format"), request.headers.get("accept"))
            target = query_target(q)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # the parser's error, as InfluxDB 3 reports it
            return JSONResponse({"error": f"error parsing query: {exc}"}, status_code=400)
        if target.statement_count != 1:
            return JSONResponse({"error": "only a single InfluxQL statement is supported"}, status_code=400)
        if db and target.database and target.database != db:
            return JSONResponse({"error": "database name in query does not match the db parameter"},
                                status_code=400)
        db = db or target.database
        if db and not await request.app.state.catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        body, _ = await self.influxql(request, db, q, "ns", params=args.get("params"))
        results = body.get("results") or []
        error = body.get("error") or (results[0].get("error") if results else None)
        if error:
            status = 504 if error.startswith(sql_guard.TIMEOUT_PREFIX) else 400
            return PlainTextResponse(error, status_code=status)
        return StreamingResponse(render(to_table_rows(body), fmt), media_type=CONTENT_TYPES[fmt])


def chunked_results(body: dict, chunk_size: int) -> Iterator[dict]:
    """InfluxDB 1.x ``chunked=true``: one JSON object per chunk of at most ``chunk_size`` values;
    a series cut in pieces carries ``"partial": true`` on every piece but its last, and so does
    a statement result on every chunk but its last."""
    for result in body.get("results", []):
        series = result.get("series")
        if not series:
            yield {"results": [result]}
            continue
        pieces: list[dict] = []
        for s in series:
            values = s.get("values") or []
            slices = [values[i:i + chunk_size] for i in range(0, len(values), chunk_size)] or [[]]
            for n, part in enumerate(slices):
                piece = {k: v for k, v in s.items() if k != "values"}
                piece["values"] = part
                if n < len(slices) - 1:
                    piece["partial"] = True
                pieces.append(piece)
        for n, piece in enumerate(pieces):
            out = {"statement_id": result["statement_id"], "series": [piece]}
            if n < len(pieces) - 1:
                out["partial"] = True
            yield {"results": [out]}
