"""The query API process: InfluxDB-compatible HTTP endpoints (and Arrow Flight) over the
catalog, buffer snapshots and Parquet files. Stateless: any number can run behind a balancer.
It talks to the worker only through Kafka (writes) and Redis (catalog, snapshots).

This module assembles the app: the per-process objects (catalog, query engine, Kafka producer,
Flight server) made at start-up, authorization and request metrics, health and ``/metrics``; the
routes themselves are in :mod:`query_api.routes`."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import generate_latest

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES
from persist.catalog import Catalog
from persist.object_store import open_store
from persist.tokens import TokenStore
from query_api.auth import TokenAuthority
from query_api.routes.common import BadRequest
from query_api.routes.compat import compat_router
from query_api.engine import QueryEngine
from query_api import sql_guard
from query_api.front import FlightTarget
from query_api.flight_sql import catalog_table_schemas
from query_api.metrics import ApiMetrics
from query_api import openapi
from query_api.routes.plugins import plugin_router
from query_api.routes.caches import CacheRoutes
from query_api.routes.configure import ConfigureRoutes
from query_api.routes.engine import engine_metrics, engine_router
from query_api.routes.explorer import ExplorerRoutes
from query_api.routes.lifecycle import lifecycle_router
from query_api.routes.flight import FlightQueries, start_flight
from query_api.routes.query import VERSION, QueryRoutes
from query_api.routes.tokens import authorize, token_router
from query_api.routes.write import WriteRoutes
from query_api.cache_feed import ValueCaches
from query_api.snapshot_cache import SnapshotCacheMetrics
from query_api.sql_guard import QueryLimits
from topics.admin import ensure_topics

log = logging.getLogger("influent.api")
PROCESS_ID = str(uuid.uuid4())
#: Errors that mean a backing service is out of reach, not that the request is wrong: 503.
UNAVAILABLE_ERRORS = (KafkaError, RedisConnectionError, RedisTimeoutError)


def create_api(settings: Settings) -> FastAPI:
    sql_guard.configure(QueryLimits(settings.query_timeout, settings.query_memory_bytes))
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await ensure_topics(settings)
        app.state.catalog = Catalog.connect(settings.redis_url, settings.app_id)
        app.state.engine = QueryEngine(app.state.catalog, open_store(settings),
                                       settings.query_cache_bytes)
        caches = ValueCaches(settings, app.state.catalog, app.state.engine.load_table)
        app.state.engine.caches = caches
        caches.start()  # last/distinct value caches: definitions polled, fed from accepted
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                    max_request_size=MAX_MESSAGE_BYTES, enable_idempotence=True)
        await producer.start()
        app.state.producer = producer
        app.state.tokens = TokenAuthority(TokenStore(app.state.catalog.redis, settings.app_id),
                                          settings.token)
        flight_server = start_flight(FlightQueries(app.state.engine, metrics),
                                     asyncio.get_running_loop(), app.state.tokens,
                                     catalog_table_schemas(app.state.catalog))
        FlightTarget.port = flight_server.port
        warming = asyncio.create_task(app.state.engine.keep_warm())  # query_api/hot_data.py
        try:
            yield
        finally:
            warming.cancel()
            FlightTarget.port = 0
            await caches.close()
            await asyncio.to_thread(flight_server.shutdown)
            await producer.stop()
            await app.state.catalog.close()

    app = FastAPI(title="influent", version=VERSION, lifespan=lifespan)
    metrics.registry.register(
        SnapshotCacheMetrics(lambda: getattr(getattr(app.state, "engine", None), "snapshots", None)))
    app.add_middleware(RequestGate, metrics=metrics)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(BadRequest, bad_request)
    app.include_router(service_router(settings, metrics))
    app.include_router(QueryRoutes(settings, metrics).router())
    app.include_router(ConfigureRoutes(settings).router())
    app.include_router(CacheRoutes().router())  # /api/v3/configure/last_cache, distinct_cache
    app.include_router(WriteRoutes(settings, metrics).router())
    app.include_router(engine_router(settings))  # subscriptions, triggers, /api/v3/engine/*
    ExplorerRoutes(settings).mount(app)  # the browser page at /explorer/, its pipeline endpoint
    app.include_router(compat_router())  # /ready, table list
    app.include_router(token_router())  # /api/v3/configure/token*
    app.include_router(plugin_router(settings))  # /api/v3/plugins/files, /api/v3/plugin_test/*
    app.include_router(lifecycle_router())  # deletes, retention periods
    openapi.install(app)  # /openapi.json: the parameters and bodies the routes read
    return app


CORS_HEADER = (b"access-control-allow-origin", b"*")


class RequestGate:
    """HTTP middleware: tokens and their permissions (:mod:`query_api.auth`; health, ping, ready
    and the explorer's files stay open), request counts and latency per route, and the CORS
    header browsers need.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` runs every request in a task
    group with memory streams between the two halves, a fixed cost of its own on each query. A
    body read to authorize the request is handed on to the route as if unread."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request = Request(scope, receive)
        try:
            denial = await authorize(request)
        except UNAVAILABLE_ERRORS as exc:  # the token store is out of reach
            denial = await unavailable(request, exc)
        status = [500]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() != CORS_HEADER[0]]
                message = {**message, "headers": headers + [CORS_HEADER]}
            await send(message)

        if denial is not None:
            await denial(scope, receive, send_with_cors)
        else:
            await self.app(scope, _replaying(request, receive), send_with_cors)
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.metrics.requests.labels(path, str(status[0])).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def _replaying(request: Request, receive: Receive) -> Receive:
    """``receive`` for the route: the body the middleware already read (to authorize a POSTed
    query) comes first, as if unread."""
    body = getattr(request, "_body", None)
    if body is None:
        return receive
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def bad_request(request: Request, exc: Exception) -> Response:
    """400 naming the request value a route could not use (:class:`BadRequest`)."""
    return JSONResponse({"error": str(exc)}, status_code=400)


async def unavailable(request: Request, exc: Exception) -> Response:
    """503 naming the service out of reach (documented on every route that needs one)."""
    service = "Kafka" if isinstance(exc, KafkaError) else "Redis (the catalog)"
    log.warning("%s %s: %s unavailable: %r", request.method, request.url.path, service, exc)
    return JSONResponse({"error": f"{service} unavailable: {exc!r}"}, status_code=503)


def service_router(settings: Settings, metrics: ApiMetrics) -> APIRouter:
    """Health, ping (InfluxDB's version headers) and ``/metrics``."""
    router = APIRouter()

    async def health() -> PlainTextResponse:
        return PlainTextResponse("OK")

    async def ping() -> JSONResponse:
        return JSONResponse({"product_name": "influent", "version": VERSION, "revision": "",
                             "process_id": PROCESS_ID},
                            headers={"X-Influxdb-Version": VERSION, "X-Influxdb-Build": "influent"})

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics.registry) + await engine_metrics(request.app, settings),
                        media_type="text/plain; version=0.0.4")

    router.add_api_route("/health", health, methods=["GET"])
    router.add_api_route("/api/v1/health", health, methods=["GET"])
    router.add_api_route("/ping", ping, methods=["GET", "POST"])
    router.add_api_route("/metrics", metrics_text, methods=["GET"])
    return router

