"""HTTP routes of the data lifecycle: InfluxDB 2's row delete and InfluxDB 3's retention periods
(per database, and per table beyond InfluxDB 3 Core).

- ``POST /api/v2/delete?bucket=<db>`` JSON ``{"start", "stop", "predicate"}`` -> 204
- ``PUT /api/v3/configure/database`` JSON ``{"db", "retention_period"?}`` (absent: cleared)
- ``POST /api/v3/configure/database/retention_period?db=&duration=`` -> 204; ``DELETE ?db=`` -> 204
- ``PUT /api/v3/configure/table`` JSON ``{"db", "table", "retention_period"?}``
- ``POST /api/v3/configure/table/retention_period?db=&table=&duration=``; ``DELETE ?db=&table=``

Routes use ``app.state.catalog`` and ``app.state.engine.store``.
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.visibility import parse_duration
from query_api.deletes import DeleteError, DeleteService, parse_v2_predicate
from query_api.influxql.timeutil import InvalidTime, parse_time_literal
from query_api.routes.common import json_body, text_field


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def deletes_of(request_or_app) -> DeleteService:
    app = getattr(request_or_app, "app", request_or_app)
    return DeleteService(app.state.catalog, app.state.engine.store)


async def set_retention(app, db: str, table: str | None, period: str | None) -> Response:
    """Apply a retention change (None clears) and copy all periods to the object store."""
    catalog: Catalog = app.state.catalog
    if not db or not await catalog.has_database(db):
        return _error(404, f"database not found: {db}")
    if table is not None and table not in await catalog.tables(db):
        return _error(404, f"table not found: {table}")
    try:
        period_ns = None if period in (None, "") else parse_duration(str(period))
    except ValueError as exc:
        return _error(400, f"invalid retention_period: {exc}")
    await catalog.set_retention(db, table, period_ns)
    await LifecycleCatalog(catalog).save_retention_copy(app.state.engine.store)
    return Response(status_code=204)


def lifecycle_router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v2/delete")
    async def delete_v2(request: Request, bucket: str = "", org: str = "") -> Response:
        body = await json_body(request)
        db = (bucket or text_field(body, "bucket")).split("/")[0]
        if not db:
            return _error(400, "bucket is required")
        try:
            start = parse_time_literal(str(body["start"]), None)
            stop = parse_time_literal(str(body["stop"]), None)
        except KeyError as exc:
            return _error(400, f"{exc.args[0]} is required (RFC3339 time)")
        except InvalidTime as exc:
            return _error(400, f"invalid time: {exc}")
        try:
            text = text_field(body, "predicate")
            measurement, predicate = parse_v2_predicate(text)
            await deletes_of(request).delete(db, [measurement] if measurement else None, start,
                                             stop, predicate, f"/api/v2/delete {text}".strip())
        except DeleteError as exc:
            return _error(400, str(exc))
        except LookupError as exc:
            return _error(404, str(exc.args[0]))
        return Response(status_code=204)

    @router.put("/api/v3/configure/database")
    async def update_database(request: Request) -> Response:
        body = await json_body(request)
        return await set_retention(request.app, text_field(body, "db"), None,
                                   body.get("retention_period"))

    @router.post("/api/v3/configure/database/retention_period")
    async def set_database_retention(request: Request, db: str = "", duration: str = "") -> Response:
        if not duration:
            return _error(400, "duration is required")
        return await set_retention(request.app, db, None, duration)

    @router.delete("/api/v3/configure/database/retention_period")
    async def clear_database_retention(request: Request, db: str = "") -> Response:
        return await set_retention(request.app, db, None, None)

    @router.put("/api/v3/configure/table")
    async def update_table(request: Request) -> Response:
        body = await json_body(request)
        return await set_retention(request.app, text_field(body, "db"), text_field(body, "table"),
                                   body.get("retention_period"))

    @router.post("/api/v3/configure/table/retention_period")
    async def set_table_retention(request: Request, db: str = "", table: str = "",
                                  duration: str = "") -> Response:
        if not duration:
            return _error(400, "duration is required")
        return await set_retention(request.app, db, table, duration)

    @router.delete("/api/v3/configure/table/retention_period")
    async def clear_table_retention(request: Request, db: str = "", table: str = "") -> Response:
        return await set_retention(request.app, db, table, None)

    return router
