"""Configure routes for databases and tables: ``/api/v3/configure/database`` (GET list, POST
create, DELETE) and ``/api/v3/configure/table`` (POST create, DELETE), InfluxDB 3's shapes."""
from __future__ import annotations

import asyncio
import time

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from influent.model import TAG, validate_db_name
from persist.catalog import Catalog, schema_conflicts
from persist.continuous_queries import ContinuousQueryStore
from persist.partitioning import DEFAULT_TIME_FORMAT, PartitionTemplate
from persist.visibility import parse_duration
from query_api.formats import CONTENT_TYPES, pick_format, render
from query_api.routes.common import json_body, text_field, text_list
from query_api.routes.lifecycle import set_retention

#: The Arrow type names of InfluxDB 3's create-table body -> field types.
TABLE_FIELD_TYPES = {"utf8": "string", "int64": "integer", "uint64": "uinteger", "float64": "float",
                     "bool": "boolean"}


class ConfigureRoutes:
    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/api/v3/configure/database", self.list_databases, methods=["GET"])
        router.add_api_route("/api/v3/configure/database", self.create_database, methods=["POST"])
        router.add_api_route("/api/v3/configure/database", self.delete_database, methods=["DELETE"])
        router.add_api_route("/api/v3/configure/table", self.delete_table, methods=["DELETE"])
        router.add_api_route("/api/v3/configure/table", self.create_table, methods=["POST"])
        return router

    async def list_databases(self, request: Request, format: str = "json") -> Response:
        names = await request.app.state.catalog.databases()
        table = pa.table({"iox::database": pa.array(names, pa.string())})
        try:
            fmt = pick_format(format, None)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return StreamingResponse(render(table, fmt), media_type=CONTENT_TYPES[fmt])

    async def create_database(self, request: Request) -> Response:
        body = await json_body(request)
        db = text_field(body, "db")
        reason = validate_db_name(db)
        if reason:
            return JSONResponse({"error": reason}, status_code=400)
        try:
            template = template_from(body)
        except (ValueError, AttributeError, TypeError) as exc:
            return JSONResponse({"error": f"invalid partition_template: {exc}"}, status_code=400)
        try:
            retention = body.get("retention_period") and parse_duration(str(body["retention_period"]))
        except ValueError as exc:
            return JSONResponse({"error": f"invalid retention_period: {exc}"}, status_code=400)
        if not await request.app.state.catalog.create_database(db):
            return PlainTextResponse("attempted to create resource that already exists", status_code=409)
        if template:
            await request.app.state.catalog.set_partition_template(db, None, template)
        if retention:
            await set_retention(request.app, db, None, str(body["retention_period"]))
        return Response(status_code=200)

    async def delete_database(self, request: Request, db: str = "") -> Response:
        """Delete a database now: catalog entries, buffered rows and Parquet files. Rows
        written before the deletion never come back (replays and buffers are dropped)."""
        catalog: Catalog = request.app.state.catalog
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        await remove_objects(request, await catalog.delete_database(db, int(time.time() * 1000)))
        await ContinuousQueryStore(catalog.redis, catalog.ns).drop_database(db)
        return Response(status_code=200)

    async def delete_table(self, request: Request, db: str = "", table: str = "") -> Response:
        """Delete one table now, like a database: catalog entries, buffered rows and Parquet
        files; rows written before the deletion never come back, later writes start afresh."""
        catalog: Catalog = request.app.state.catalog
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        if not table or table not in await catalog.tables(db):
            return JSONResponse({"error": f"table not found: {table}"}, status_code=404)
        await remove_objects(request, await catalog.delete_table(db, table, int(time.time() * 1000)))
        return Response(status_code=200)

    async def create_table(self, request: Request) -> Response:
        body = await json_body(request)
        db, table = text_field(body, "db"), text_field(body, "table")
        reason = validate_db_name(db) or (None if table else "table name cannot be empty")
        if reason:
            return JSONResponse({"error": reason}, status_code=400)
        columns = {t: TAG for t in text_list(body, "tags")}
        try:
            for f in body.get("fields") or []:
                if not isinstance(f["name"], str) or not f["name"]:
                    raise ValueError(f"field name {f['name']!r} is not a non-empty string")
                columns[f["name"]] = TABLE_FIELD_TYPES[f["type"]]
            template = template_from(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"invalid table definition: {exc}"}, status_code=400)
        catalog: Catalog = request.app.state.catalog
        if table in await catalog.tables(db):
            return PlainTextResponse("attempted to create resource that already exists", status_code=409)
        schema = await catalog.ensure_columns(db, table, columns)
        clashes = schema_conflicts(columns, schema.columns)
        if clashes:
            return JSONResponse({"error": "; ".join(clashes.values())}, status_code=409)
        if template:
            await catalog.set_partition_template(db, table, template)
        return Response(status_code=200)


def template_from(body: dict) -> PartitionTemplate | None:
    """The request's ``partition_template`` (``time_format``, ``tags``), or None."""
    raw = body.get("partition_template")
    if raw is None:
        return None
    return PartitionTemplate(raw.get("time_format") or DEFAULT_TIME_FORMAT, tuple(raw.get("tags") or ()))


async def remove_objects(request: Request, paths: list[str]) -> None:
    """Delete the Parquet objects of a dropped database or table (off the event loop)."""
    store = request.app.state.engine.store
    await asyncio.to_thread(lambda: [store.delete(p) for p in paths])
