"""Small HTTP routes for InfluxDB tools: ``/ready`` and ``GET /api/v3/configure/table``.

- ``GET /ready`` — 200 ``OK`` once this API process can serve: the catalog (Redis) answers, the
  write producer and the Flight server run; else 503 with the reason. Open like ``/health``,
  so load balancers and orchestrators can probe it without a token.
- ``GET /api/v3/configure/table?db=`` — the database's tables, each with its columns and types
  (influent's, for ``influent table list``; InfluxDB 3 lists tables through SQL).
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from persist.catalog import FIELD_TYPES, TAG
from query_api.front import FlightTarget

#: catalog kind -> InfluxDB 3's type name in the configure API
API_TYPE_NAMES = {"string": "utf8", "integer": "int64", "uinteger": "uint64", "float": "float64",
                  "boolean": "bool"}


def compat_router() -> APIRouter:
    router = APIRouter()

    @router.get("/ready")
    async def ready(request: Request) -> Response:
        state = request.app.state
        try:
            await state.catalog.redis.ping()
        except Exception as exc:  # any connection failure means not ready
            return PlainTextResponse(f"not ready: catalog unreachable: {exc}", status_code=503)
        if getattr(state, "producer", None) is None:
            return PlainTextResponse("not ready: write producer not started", status_code=503)
        if not FlightTarget.port:
            return PlainTextResponse("not ready: Flight server not started", status_code=503)
        return PlainTextResponse("OK")

    @router.get("/api/v3/configure/table")
    async def list_tables(request: Request, db: str = "") -> Response:
        catalog = request.app.state.catalog
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        out = []
        for table in await catalog.tables(db):
            columns = (await catalog.table_schema(db, table)).columns
            out.append({"table_name": table,
                        "tags": sorted(c for c, k in columns.items() if k == TAG),
                        "fields": [{"name": c, "type": API_TYPE_NAMES[k]}
                                   for c, k in sorted(columns.items()) if k in FIELD_TYPES]})
        return JSONResponse(out)

    return router
