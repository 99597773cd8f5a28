"""HTTP side of subscriptions and the processing engine, mounted on the query API:

- ``/api/v3/configure/subscription`` — POST create, GET list (``?db=``), DELETE (``?db=&name=``);
- ``/api/v3/configure/processing_engine_trigger`` — POST create, DELETE, GET list (``?db=``),
  ``/enable`` and ``/disable`` (InfluxDB 3's request bodies);
- ``/api/v3/engine/<path>`` — request triggers (``request:<path>``), run in this process;
- :func:`subscription_statements` — the InfluxQL executor's hook for CREATE/DROP/SHOW
  SUBSCRIPTIONS;
- :func:`engine_metrics` — Prometheus text for ``/metrics``: subscription and trigger lag,
  calls, errors, log lines and deliveries, read from Redis (the workers write them there), so
  any API process shows the whole cluster.

The routes use ``app.state.catalog`` (Redis), ``.engine`` (queries from request plugins) and
``.producer`` (their writes).
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from processing_engine.plugins import PluginNotFound, plugin_path
from processing_engine.responses import BadResponse, shape_response
from processing_engine.runtime import PluginRuntime
from processing_engine.specs import HTTP, KINDS, REQUEST, SpecError, parse_spec
from influent.config import Settings
from persist.catalog import Catalog, validate_db_name
from persist.plugin_files import PluginFiles
from persist.engine_catalog import (SEP, Destination, EngineCatalog, PluginStore, Subscription,
                                    Trigger, TriggerSettings, now_ms)
from topics.subscription_filter import PredicateError, parse_predicate


class Refused(Exception):
    """A management request that cannot be done; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _engine_catalog(app: FastAPI, settings: Settings) -> EngineCatalog:
    if getattr(app.state, "engine_catalog", None) is None:
        app.state.engine_catalog = EngineCatalog(app.state.catalog.redis, settings.app_id)
    return app.state.engine_catalog


def _name_problem(name: str, what: str) -> str | None:
    if not name:
        return f"{what} name cannot be empty"
    if any(c in name for c in (SEP, "\n", "\r", "/")):
        return f"invalid character in {what} name: {name!r}"
    return None


async def _require_database(catalog: Catalog, db: str) -> None:
    reason = validate_db_name(db)
    if reason:
        raise Refused(400, reason)
    if not await catalog.has_database(db):
        raise Refused(404, f"database not found: {db}")


# ---- subscriptions -------------------------------------------------------------------------


def subscription_from_api(body: dict[str, Any]) -> Subscription:
    """A subscription from the JSON API's body (raises Refused 400)."""
    db, name = str(body.get("db") or ""), str(body.get("name") or "")
    problem = validate_db_name(db) or _name_problem(name, "subscription")
    if problem:
        raise Refused(400, problem)
    raw = body.get("destinations") or ([body["destination"]] if body.get("destination") else [])
    mode = str(body.get("mode") or "ALL").upper()
    tables = body.get("tables") or []
    try:
        if not raw:
            raise ValueError('missing "destination"')
        if mode not in ("ALL", "ANY"):
            raise ValueError("mode must be ALL or ANY")
        if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables):
            raise ValueError('"tables" must be a list of table names')
        destinations = tuple(Destination.parse(d) for d in raw)
        predicate = str(body.get("predicate") or "")
        parse_predicate(predicate)
    except PredicateError as exc:
        raise Refused(400, f"invalid predicate: {exc}") from exc
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc
    return Subscription(db, name, destinations, mode, tuple(tables), predicate,
                        created_ms=now_ms())


async def create_subscription(catalog: Catalog, engine: EngineCatalog, sub: Subscription) -> None:
    await _require_database(catalog, sub.database)
    if not await engine.create_subscription(sub):
        raise Refused(409, "subscription already exists")


class SubscriptionStatements:
    """The InfluxQL executor's subscription hook (messages as InfluxDB 1.x words them)."""

    def __init__(self, catalog: Catalog, engine: EngineCatalog):
        self.catalog = catalog
        self.engine = engine

    @staticmethod
    def _check_rp(rp: str) -> None:
        if rp not in ("autogen", "default"):
            raise LookupError(f"retention policy not found: {rp}")

    async def create_subscription(self, db: str, rp: str, name: str, mode: str,
                                  destinations: list[str]) -> None:
        if not await self.catalog.has_database(db):
            raise LookupError(f"database not found: {db}")
        self._check_rp(rp)
        problem = _name_problem(name, "subscription")
        if problem:
            raise ValueError(problem)
        sub = Subscription(db, name, tuple(Destination.parse(d) for d in destinations), mode,
                           retention_policy="autogen", created_ms=now_ms())
        try:
            await create_subscription(self.catalog, self.engine, sub)
        except Refused as exc:
            raise ValueError(str(exc)) from exc

    async def drop_subscription(self, db: str, rp: str, name: str) -> None:
        if not await self.catalog.has_database(db):
            raise LookupError(f"database not found: {db}")
        self._check_rp(rp)
        if not await self.engine.delete_subscription(db, name):
            raise LookupError("subscription not found")

    async def list_subscriptions(self) -> list[tuple[str, str, str, str, list[str]]]:
        return [(s.database, s.retention_policy, s.name, s.mode, [d.uri for d in s.destinations])
                for s in await self.engine.subscriptions()]


def subscription_statements(app: FastAPI, settings: Settings) -> SubscriptionStatements:
    return SubscriptionStatements(app.state.catalog, _engine_catalog(app, settings))


# ---- triggers ------------------------------------------------------------------------------


def trigger_from_api(body: dict[str, Any], settings: Settings,
                     uploaded: frozenset[str] = frozenset()) -> Trigger:
    """A trigger from InfluxDB 3's create body (raises Refused 400); ``uploaded`` names the
    plugins uploaded to the catalog (found there before the plugin directory)."""
    db, name = str(body.get("db") or ""), str(body.get("trigger_name") or "")
    problem = validate_db_name(db) or _name_problem(name, "trigger")
    if problem:
        raise Refused(400, problem)
    filename = str(body.get("plugin_filename") or "")
    if not filename:
        raise Refused(400, "missing plugin_filename")
    try:
        spec = parse_spec(str(body.get("trigger_specification") or ""))
        trigger_settings = TriggerSettings.from_api(body.get("trigger_settings"))
        if filename not in uploaded:
            plugin_path(settings.plugins_path, filename)
    except PluginNotFound as exc:
        raise Refused(400, str(exc)) from exc
    except (SpecError, ValueError, TypeError) as exc:
        raise Refused(400, str(exc)) from exc
    raw_args = body.get("trigger_arguments")
    if raw_args is not None and not isinstance(raw_args, dict):
        raise Refused(400, "trigger_arguments must be an object of strings")
    arguments = {str(k): str(v) for k, v in raw_args.items()} if raw_args else None
    return Trigger(db, name, filename, spec.text, arguments, trigger_settings,
                   disabled=bool(body.get("disabled", False)), start_ms=now_ms())


async def create_trigger(catalog: Catalog, engine: EngineCatalog, trigger: Trigger) -> None:
    await _require_database(catalog, trigger.database)
    spec = parse_spec(trigger.specification)
    if spec.source == HTTP:
        for other in await engine.triggers():
            if parse_spec(other.specification).path == spec.path:
                raise Refused(409, f"request path {spec.path} is already used by trigger "
                                   f"{other.database}/{other.name}")
    if not await engine.create_trigger(trigger):
        raise Refused(409, f"trigger {trigger.name} already exists in database {trigger.database}")


async def request_trigger(engine: EngineCatalog, path: str) -> Trigger | None:
    for trigger in await engine.triggers():
        spec = parse_spec(trigger.specification)
        if spec.source == HTTP and spec.path == path.strip("/") and not trigger.disabled:
            return trigger
    return None


def _runtime(app: FastAPI, settings: Settings) -> PluginRuntime:
    """The request-trigger runtime of this API process (created on first use)."""
    if getattr(app.state, "plugin_runtime", None) is None:
        engine = app.state.engine

        async def query_table(db: str, sql: str, params: dict | None):
            return await engine.sql(db, sql, params)

        app.state.plugin_runtime = PluginRuntime(settings, app.state.producer,
                                                 _engine_catalog(app, settings),
                                                 PluginStore(settings.redis_url, settings.app_id),
                                                 query_table)
    return app.state.plugin_runtime


# ---- metrics -------------------------------------------------------------------------------


class _EngineCollector:
    """One scrape's worth of engine counters and lags, as Prometheus metric families."""

    COUNTERS = {  # stat name -> (metric, help, labels)
        "calls": ("influent_trigger_calls", "Plugin calls", ["db", "trigger"]),
        "errors": ("influent_trigger_errors", "Plugin calls that failed", ["db", "trigger"]),
        "log_lines": ("influent_plugin_log_lines", "Plugin log lines", ["db", "trigger", "level"]),
        "subscription_delivered": ("influent_subscription_delivered_lines",
                                   "Lines delivered", ["db", "subscription", "destination"]),
        "subscription_failures": ("influent_subscription_delivery_failures",
                                  "Failed delivery attempts", ["db", "subscription", "destination"]),
        "subscription_dropped": ("influent_subscription_dropped_lines",
                                 "Lines a destination refused for good", ["db", "subscription", "destination"]),
    }

    def __init__(self, stats: dict[tuple[str, ...], int], lags: dict[tuple[str, ...], int]):
        self.stats, self.lags = stats, lags

    def collect(self):
        families = {k: CounterMetricFamily(m, h, labels=labels)
                    for k, (m, h, labels) in self.COUNTERS.items()}
        for key, value in sorted(self.stats.items()):
            family = families.get(key[0])
            if family is not None and len(key) - 1 == len(self.COUNTERS[key[0]][2]):
                family.add_metric(list(key[1:]), value)
        sub_lag = GaugeMetricFamily("influent_subscription_lag",
                                    "Accepted batches not yet delivered (summed over partitions)",
                                    labels=["db", "subscription", "destination"])
        trig_lag = GaugeMetricFamily("influent_trigger_lag", "Events not yet handled by a trigger",
                                     labels=["db", "trigger"])
        sums: dict[tuple[str, ...], int] = {}
        for (kind, db, name, dest, _partition), lag in self.lags.items():
            key = (kind, db, name, dest)
            sums[key] = sums.get(key, 0) + lag
        for (kind, db, name, dest), lag in sorted(sums.items()):
            if kind == "subscription":
                sub_lag.add_metric([db, name, dest], lag)
            elif kind == "trigger":
                trig_lag.add_metric([db, name], lag)
        yield from families.values()
        yield sub_lag
        yield trig_lag


async def engine_metrics(app: FastAPI, settings: Settings) -> bytes:
    """Prometheus text of the engine metrics (appended to the API's ``/metrics``)."""
    engine = _engine_catalog(app, settings)
    stats, lags = await asyncio.gather(engine.stats(), engine.lags())
    registry = CollectorRegistry()
    registry.register(_EngineCollector(stats, {k: v for k, v in lags.items() if len(k) == 5}))
    return generate_latest(registry)


# ---- routes --------------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"invalid JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return {**dict(request.query_params), **body}


def _answering_refusals(handler):
    """Turn a Refused raised by a route into its JSON error response."""

    @functools.wraps(handler)
    async def route(*args, **kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return route


async def _target(request: Request, name_key: str) -> tuple[str, str, dict[str, Any]]:
    """(db, name, whole body) of a request that names one subscription or trigger."""
    body = await _body(request)
    return str(body.get("db") or ""), str(body.get(name_key) or ""), body


def engine_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    def engine(request: Request) -> EngineCatalog:
        return _engine_catalog(request.app, settings)

    # subscriptions
    @router.post("/api/v3/configure/subscription")
    @_answering_refusals
    async def post_subscription(request: Request) -> Response:
        sub = subscription_from_api(await _body(request))
        await create_subscription(request.app.state.catalog, engine(request), sub)
        return JSONResponse(sub.to_api(), status_code=201)

    @router.get("/api/v3/configure/subscription")
    async def list_subscriptions(request: Request, db: str | None = None) -> Response:
        return JSONResponse([s.to_api() for s in await engine(request).subscriptions(db or None)])

    @router.delete("/api/v3/configure/subscription")
    @_answering_refusals
    async def delete_subscription(request: Request) -> Response:
        db, name, _ = await _target(request, "name")
        if not await engine(request).delete_subscription(db, name):
            raise Refused(404, "subscription not found")
        return Response(status_code=200)

    # triggers
    @router.post("/api/v3/configure/processing_engine_trigger")
    @_answering_refusals
    async def post_trigger(request: Request) -> Response:
        uploaded = PluginFiles(request.app.state.catalog.redis, settings.app_id)
        trigger = trigger_from_api(await _body(request), settings,
                                   frozenset(await uploaded.names()))
        await create_trigger(request.app.state.catalog, engine(request), trigger)
        return Response(status_code=200)

    @router.get("/api/v3/configure/processing_engine_trigger")
    async def list_triggers(request: Request, db: str | None = None) -> Response:
        return JSONResponse([t.to_api() for t in await engine(request).triggers(db or None)])

    @router.delete("/api/v3/configure/processing_engine_trigger")
    @_answering_refusals
    async def delete_trigger(request: Request) -> Response:
        db, name, body = await _target(request, "trigger_name")
        trigger = await engine(request).trigger(db, name)
        if trigger is None:
            raise Refused(404, f"trigger not found: {name}")
        if not trigger.disabled and str(body.get("force", False)).lower() not in ("true", "1"):
            raise Refused(409, f"trigger {name} is enabled; disable it first or delete with force")
        await engine(request).delete_trigger(db, name)
        return Response(status_code=200)

    @_answering_refusals
    async def set_disabled(request: Request, disabled: bool) -> Response:
        db, name, _ = await _target(request, "trigger_name")
        if await engine(request).set_trigger_disabled(db, name, disabled) is None:
            raise Refused(404, f"trigger not found: {name}")
        return Response(status_code=200)

    @router.post("/api/v3/configure/processing_engine_trigger/enable")
    async def enable_trigger(request: Request) -> Response:
        return await set_disabled(request, False)

    @router.post("/api/v3/configure/processing_engine_trigger/disable")
    async def disable_trigger(request: Request) -> Response:
        return await set_disabled(request, True)

    # request triggers
    @router.api_route("/api/v3/engine/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def engine_request(request: Request, path: str) -> Response:
        trigger = await request_trigger(engine(request), path)
        if trigger is None:
            return Response('{error: "not found"}', status_code=404, media_type="application/json")
        params = dict(request.query_params)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        body = await request.body()
        runtime = _runtime(request.app, settings)
        outcome = await runtime.call(trigger, KINDS[REQUEST].function,
                                     lambda api: (api, params, headers, body, trigger.arguments))
        await runtime.settle(trigger, outcome)
        if outcome.skipped:
            return Response('{error: "not found"}', status_code=404, media_type="application/json")
        if not outcome.ok:
            return JSONResponse({"error": outcome.error}, status_code=500)
        try:
            shaped = shape_response(outcome.result)
        except BadResponse as exc:
            await asyncio.to_thread(runtime.store.log, trigger.database, trigger.name, "ERROR", str(exc))
            return JSONResponse({"error": str(exc)}, status_code=500)
        return Response(shaped.body, status_code=shaped.status, headers=shaped.headers)

    return router
