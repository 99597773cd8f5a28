"""``/api/v3/configure/last_cache`` and ``/api/v3/configure/distinct_cache`` (POST create,
DELETE), with InfluxDB 3 Core's JSON fields and status codes: 201 and the definition on create,
400 for a missing or bad field, 404 for an unknown database, table or cache, 409 when the table
already has a cache of that name; 200 on delete. Definitions go to the catalog
(persist/value_caches.py); every API process then seeds and feeds its copy
(query_api/cache_feed.py)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from persist.catalog import Catalog
from persist.value_caches import (CacheCatalog, CacheRequestError, distinct_cache_from_request,
                                  last_cache_from_request)
from query_api.routes.common import json_body

BUILDERS = {"last": last_cache_from_request, "distinct": distinct_cache_from_request}


class CacheRoutes:
    def router(self) -> APIRouter:
        router = APIRouter()
        for kind in BUILDERS:
            path = f"/api/v3/configure/{kind}_cache"
            router.add_api_route(path, self._create(kind), methods=["POST"])
            router.add_api_route(path, self._delete(kind), methods=["DELETE"])
        return router

    def _create(self, kind: str):
        async def create(request: Request) -> Response:
            catalog: Catalog = request.app.state.catalog
            body = await json_body(request)
            try:
                definition = BUILDERS[kind](body, await _schema(catalog, body))
            except CacheRequestError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            if not await CacheCatalog(catalog.redis, catalog.ns).create(definition):
                return JSONResponse({"error": f"a {kind} cache named {definition.name!r} "
                                              f"already exists on table {definition.table!r}"},
                                    status_code=409)
            caches = request.app.state.engine.caches
            if caches is not None:
                await caches.sync()  # this process starts seeding it now
            return JSONResponse(definition.to_json(), status_code=201)
        return create

    def _delete(self, kind: str):
        async def delete(request: Request) -> Response:
            catalog: Catalog = request.app.state.catalog
            args = dict(request.query_params) or await json_body(request)
            db, table, name = (args.get(k) for k in ("db", "table", "name"))
            if not all(isinstance(v, str) and v for v in (db, table, name)):
                return JSONResponse({"error": "db, table and name are required"}, status_code=400)
            if not await CacheCatalog(catalog.redis, catalog.ns).drop(kind, db, table, name):
                return JSONResponse({"error": f"{kind} cache not found: {name}"}, status_code=404)
            caches = request.app.state.engine.caches
            if caches is not None:
                await caches.sync()
            return Response(status_code=200)
        return delete


async def _schema(catalog: Catalog, body: dict):
    """The target table's columns; CacheRequestError 400/404 for a missing or unknown one."""
    db, table = body.get("db"), body.get("table")
    if not isinstance(db, str) or not db or not isinstance(table, str) or not table:
        raise CacheRequestError(400, "db and table are required")
    if not await catalog.has_database(db):
        raise CacheRequestError(404, f"database not found: {db}")
    if table not in await catalog.tables(db):
        raise CacheRequestError(404, f"table not found: {table}")
    return await catalog.table_schema(db, table)
