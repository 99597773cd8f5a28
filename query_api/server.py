"""The query API process: InfluxDB-compatible HTTP endpoints over the catalog, buffer snapshots
and (as persistence lands) Parquet files. Stateless: any number can run behind a balancer.
It talks to the worker only through Kafka (writes) and Redis (catalog, snapshots)."""
from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import time
import uuid
from contextlib import asynccontextmanager
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from influent.config import Settings
import pyarrow as pa

from persist.catalog import TAG, Catalog, schema_conflicts, validate_db_name
from persist.partitioning import DEFAULT_TIME_FORMAT, PartitionTemplate
from persist.object_store import open_store
from query_api.engine import DatabaseNotFound, EngineSource, QueryEngine, QueryError, QueryStats
from query_api.engine_routes import engine_metrics, engine_router, subscription_statements
from query_api.influxql.executor import execute_influxql, query_target
from query_api.influxql.results import encode_json, to_table_rows
from query_api.flight import start_flight
from query_api.formats import CONTENT_TYPES, pick_format, render, render_batches
from query_api.front import FlightTarget
from query_api.snapshot_cache import SnapshotCacheMetrics
from query_api.writes import BodyTooLarge, check_write, read_body, v3_error_body
from topics.admin import ensure_topics
from topics.line_protocol import parse_lp
from topics.wire import RejectedLine, now

log = logging.getLogger("influent.api")
VERSION = "0.1.0"
OPEN_PATHS = {"/health", "/api/v1/health", "/ping"}
PROCESS_ID = str(uuid.uuid4())


def create_api(settings: Settings) -> FastAPI:
    registry = CollectorRegistry()
    requests = Counter("influent_http_requests", "HTTP requests", ["path", "status"], registry=registry)
    latency = Histogram("influent_http_request_seconds", "HTTP request latency", ["path"], registry=registry)
    lines_written = Counter("influent_lines_written", "Lines accepted by the write router", registry=registry)
    lines_rejected = Counter("influent_lines_rejected", "Lines rejected by the write router", registry=registry)
    files_read = Counter("influent_query_files_read", "Parquet files opened by queries", registry=registry)
    files_pruned = Counter("influent_query_files_pruned", "Parquet files skipped by time pruning", registry=registry)
    rows_scanned = Counter("influent_query_rows_scanned", "Rows read by queries before dedup", registry=registry)
    registry.register(SnapshotCacheMetrics(lambda: getattr(getattr(app.state, "engine", None), "snapshots", None)))

    def observe(stats: QueryStats) -> None:
        files_read.inc(stats.files_read)
        files_pruned.inc(stats.files_pruned)
        rows_scanned.inc(stats.rows_scanned)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await ensure_topics(settings)
        app.state.catalog = Catalog.connect(settings.redis_url, settings.app_id)
        app.state.engine = QueryEngine(app.state.catalog, open_store(settings),
                                       settings.query_cache_bytes)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                    max_request_size=32 * 1024 * 1024, enable_idempotence=True)
        await producer.start()
        app.state.producer = producer
        flight_server = start_flight(flight_query, asyncio.get_running_loop(), settings.token)
        FlightTarget.port = flight_server.port
        try:
            yield
        finally:
            FlightTarget.port = 0
            await asyncio.to_thread(flight_server.shutdown)
            await producer.stop()
            await app.state.catalog.close()

    app = FastAPI(title="influent", version=VERSION, lifespan=lifespan)

    async def flight_query(db: str, q: str, kind: str, params: dict | None) -> pa.Table:
        """A Flight DoGet: the same engine as HTTP; InfluxQL rows as in query_influxql."""
        stats = QueryStats()
        try:
            if kind == "sql":
                return await app.state.engine.sql(db, q, params, stats)
            await app.state.engine.require_database(db)
            body = await execute_influxql(q, db, EngineSource(app.state.engine, stats),
                                          now_ns=time.time_ns(), epoch="ns", params=params)
            results = body.get("results") or []
            error = body.get("error") or (results[0].get("error") if results else None)
            if error:
                raise QueryError(error)
            return to_table_rows(body)
        finally:
            observe(stats)

    @app.middleware("http")
    async def observe_and_authorize(request: Request, call_next):
        start = time.perf_counter()
        if settings.token and request.url.path not in OPEN_PATHS and not _authorized(request, settings.token):
            response: Response = Response(status_code=401)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - start)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    # ---- health ---------------------------------------------------------------------------
    @app.get("/health")
    @app.get("/api/v1/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.api_route("/ping", methods=["GET", "POST"])
    async def ping() -> JSONResponse:
        return JSONResponse({"product_name": "influent", "version": VERSION, "revision": "",
                             "process_id": PROCESS_ID},
                            headers={"X-Influxdb-Version": VERSION, "X-Influxdb-Build": "influent"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry) + await engine_metrics(app, settings),
                        media_type="text/plain; version=0.0.4")

    # ---- SQL ------------------------------------------------------------------------------
    @app.api_route("/api/v3/query_sql", methods=["GET", "POST"])
    async def query_sql(request: Request) -> Response:
        args = await _query_args(request)
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
        stats = QueryStats()
        try:
            schema, batches = await request.app.state.engine.sql_stream(db, q, params or None, stats)
        except DatabaseNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except QueryError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        finally:
            observe(stats)
        return StreamingResponse(render_batches(schema, batches, fmt), media_type=CONTENT_TYPES[fmt],
                                 headers={"X-Influent-Files-Read": str(stats.files_read),
                                          "X-Influent-Files-Pruned": str(stats.files_pruned)})

    # ---- admin --------------------------------------------------------------------------------
    def template_from(body: dict) -> PartitionTemplate | None:
        raw = body.get("partition_template")
        if raw is None:
            return None
        return PartitionTemplate(raw.get("time_format") or DEFAULT_TIME_FORMAT, tuple(raw.get("tags") or ()))

    @app.get("/api/v3/configure/database")
    async def list_databases(format: str = "json") -> Response:
        names = await app.state.catalog.databases()
        table = pa.table({"iox::database": pa.array(names, pa.string())})
        fmt = pick_format(format, None)
        return StreamingResponse(render(table, fmt), media_type=CONTENT_TYPES[fmt])

    @app.post("/api/v3/configure/database")
    async def create_database(request: Request) -> Response:
        body = await _json_body(request)
        db = body.get("db") or ""
        reason = validate_db_name(db)
        if reason:
            return JSONResponse({"error": reason}, status_code=400)
        try:
            template = template_from(body)
        except (ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"invalid partition_template: {exc}"}, status_code=400)
        if not await app.state.catalog.create_database(db):
            return PlainTextResponse("attempted to create resource that already exists", status_code=409)
        if template:
            await app.state.catalog.set_partition_template(db, None, template)
        return Response(status_code=200)

    @app.delete("/api/v3/configure/database")
    async def delete_database(db: str = "") -> Response:
        """Delete a database now: catalog entries, buffered rows and Parquet files. Rows
        written before the deletion never come back (replays and buffers are dropped)."""
        catalog: Catalog = app.state.catalog
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        await remove_objects(await catalog.delete_database(db, int(time.time() * 1000)))
        return Response(status_code=200)

    @app.delete("/api/v3/configure/table")
    async def delete_table(db: str = "", table: str = "") -> Response:
        """Delete one table now, like a database: catalog entries, buffered rows and Parquet
        files; rows written before the deletion never come back, later writes start afresh."""
        catalog: Catalog = app.state.catalog
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        if not table or table not in await catalog.tables(db):
            return JSONResponse({"error": f"table not found: {table}"}, status_code=404)
        await remove_objects(await catalog.delete_table(db, table, int(time.time() * 1000)))
        return Response(status_code=200)

    async def remove_objects(paths: list[str]) -> None:
        """Delete the Parquet objects of a dropped database or table (off the event loop)."""
        store = app.state.engine.store
        await asyncio.to_thread(lambda: [store.delete(p) for p in paths])

    @app.post("/api/v3/configure/table")
    async def create_table(request: Request) -> Response:
        body = await _json_body(request)
        db, table = body.get("db") or "", body.get("table") or ""
        reason = validate_db_name(db) or (None if table else "table name cannot be empty")
        if reason:
            return JSONResponse({"error": reason}, status_code=400)
        types = {"utf8": "string", "int64": "integer", "uint64": "uinteger", "float64": "float",
                 "bool": "boolean"}
        columns = {t: TAG for t in body.get("tags") or []}
        try:
            for f in body.get("fields") or []:
                columns[f["name"]] = types[f["type"]]
            template = template_from(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"invalid table definition: {exc}"}, status_code=400)
        catalog: Catalog = app.state.catalog
        if table in await catalog.tables(db):
            return PlainTextResponse("attempted to create resource that already exists", status_code=409)
        schema = await catalog.ensure_columns(db, table, columns)
        clashes = schema_conflicts(columns, schema.columns)
        if clashes:
            return JSONResponse({"error": "; ".join(clashes.values())}, status_code=409)
        if template:
            await catalog.set_partition_template(db, table, template)
        return Response(status_code=200)

    # ---- InfluxQL ---------------------------------------------------------------------------
    async def influxql(db: str | None, q: str, epoch: str | None, rp: str | None = None,
                       params: Any = None) -> tuple[dict, QueryStats]:
        stats = QueryStats()
        if isinstance(params, str):
            try:
                params = orjson.loads(params)
            except orjson.JSONDecodeError:
                return {"error": "error parsing query parameters: params must be JSON"}, stats
        try:
            body = await execute_influxql(q, db or None, EngineSource(app.state.engine, stats),
                                          now_ns=time.time_ns(), epoch=epoch, rp=rp,
                                          params=params or None,
                                          subscriptions=subscription_statements(app, settings))
        finally:
            observe(stats)
        return body, stats

    @app.api_route("/query", methods=["GET", "POST"])
    async def query_v1(request: Request) -> Response:
        """InfluxDB 1.x ``/query``: results shaped exactly as 1.x shapes them."""
        args = await _query_args(request)
        q = args.get("q")
        if not q:
            return JSONResponse({"error": "missing required parameter \"q\""}, status_code=400)
        body, _ = await influxql(args.get("db"), q, args.get("epoch"), args.get("rp"),
                                 args.get("params"))
        status = 400 if "error" in body and "results" not in body else 200
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

    @app.api_route("/api/v3/query_influxql", methods=["GET", "POST"])
    async def query_influxql(request: Request) -> Response:
        """InfluxDB 3 InfluxQL endpoint: one statement, rows with an ``iox::measurement`` column."""
        args = await _query_args(request)
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
        if db and not await app.state.catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        body, _ = await influxql(db, q, "ns", params=args.get("params"))
        results = body.get("results") or []
        error = body.get("error") or (results[0].get("error") if results else None)
        if error:
            return PlainTextResponse(error, status_code=400)
        return StreamingResponse(render(to_table_rows(body), fmt), media_type=CONTENT_TYPES[fmt])

    # ---- writes (the router) --------------------------------------------------------------
    async def route_write(request: Request, db: str | None, precision: str,
                          accept_partial: bool) -> tuple[int, Any]:
        if not db:
            return 400, {"error": "missing query parameter 'db'"}
        reason = validate_db_name(db)
        if reason:
            return 400, {"error": reason}
        try:
            body = read_body(await request.body(), request.headers.get("content-encoding"),
                             settings.max_body_bytes)
        except BodyTooLarge as exc:
            return 413, {"error": str(exc)}
        except ValueError as exc:
            return 400, {"error": str(exc)}
        default_time = time.time_ns()
        try:
            result = parse_lp(body, precision=precision, default_time=default_time)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        catalog: Catalog = request.app.state.catalog
        schemas = {name: await catalog.table_schema(db, name) for name in result.tables}
        checked = check_write(result, schemas, body)
        if not checked.errors and not checked.valid_lines:
            return 400, {"error": "incoming write was empty"}
        producer: AIOKafkaProducer = request.app.state.producer
        if checked.errors:
            lines_rejected.inc(len(checked.errors))
            for err in checked.errors:
                record = RejectedLine(db, err.line, err.original, err.reason, "http", -1, -1, now())
                await producer.send(settings.rejected_topic, record.to_json(), key=db.encode())
            if not accept_partial or not checked.valid_lines:
                await producer.flush()
                return 400, v3_error_body(checked.errors, accept_partial)
        payload = body if not checked.errors else checked.body_of_valid_lines(body)
        headers = [("db", db.encode()), ("precision", precision.encode())]
        await producer.send_and_wait(settings.writes_topic, payload, headers=headers)
        lines_written.inc(len(checked.valid_lines))
        if checked.errors:
            return 400, v3_error_body(checked.errors, True)
        return 204, None

    def write_response(status: int, body: Any) -> Response:
        return Response(status_code=204) if status == 204 else JSONResponse(body, status_code=status)

    @app.post("/api/v3/write_lp")
    async def write_lp(request: Request, db: str | None = None, precision: str = "auto",
                       accept_partial: bool = True) -> Response:
        return write_response(*await route_write(request, db, precision, accept_partial))

    @app.post("/write")
    async def write_v1(request: Request, db: str | None = None, rp: str | None = None,
                       precision: str = "ns") -> Response:
        if db and rp and rp not in ("autogen", "default"):
            db = f"{db}/{rp}"
        return write_response(*await route_write(request, db, precision, False))

    @app.post("/api/v2/write")
    async def write_v2(request: Request, bucket: str | None = None, precision: str = "ns") -> Response:
        status, body = await route_write(request, bucket, precision, False)
        if status == 204:
            return Response(status_code=204)
        message = body.get("error", "")
        if isinstance(body.get("data"), dict):
            message = f"write buffer error: line protocol parse failed: {body['data']['error_message']}"
        code = {413: "request too large"}.get(status, "invalid")
        return JSONResponse({"code": code, "message": message}, status_code=status)

    app.include_router(engine_router(settings))  # subscriptions, triggers, /api/v3/engine/*
    return app


async def _query_args(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        raw = await request.body()
        if raw and "json" in ctype:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        elif raw:
            form = await request.form()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


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


async def _json_body(request: Request) -> dict:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _authorized(request: Request, token: str) -> bool:
    offered = request.query_params.get("p", "")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        offered = value.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(value).decode().split(":", 1)[-1]
        except (ValueError, UnicodeDecodeError):
            return False
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())
