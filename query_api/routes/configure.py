"""Configure routes for databases and tables: ``/api/v3/configure/database`` (GET list, POST
create, DELETE) and ``/api/v3/configure/table`` (POST create, DELETE), InfluxDB 3's shapes."""
from __future__ import annotations

import asyncio
import time

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from influent.config import Settings
from influent.model import TAG, validate_db_name
from persist.catalog import Catalog, schema_conflicts
from persist.continuous_queries import ContinuousQueryStore
from persist.value_caches import CacheCatalog
from persist.partitioning import DEFAULT_TIME_FORMAT, PartitionTemplate
from persist.soft_deletes import HardDeleteTimeError, SoftDeletes, format_ms, parse_hard_delete_at
from persist.visibility import parse_duration
from query_api.formats import CONTENT_TYPES, pick_format, render
from query_api.routes.common import json_body, text_field, text_list
from query_api.routes.lifecycle import set_retention

#: The Arrow type names of InfluxDB 3's create-table body -> field types.
TABLE_FIELD_TYPES = {"utf8": "string", "int64": "integer", "uint64": "uinteger", "float64": "float",
                     "bool": "boolean"}


class ConfigureRoutes:
    def __init__(self, settings: Settings):
        self.settings = settings

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/api/v3/configure/database", self.list_databases, methods=["GET"])
        router.add_api_route("/api/v3/configure/database", self.create_database, methods=["POST"])
        router.add_api_route("/api/v3/configure/database", self.delete_database, methods=["DELETE"])
        router.add_api_route("/api/v3/configure/table", self.delete_table, methods=["DELETE"])
        router.add_api_route("/api/v3/configure/table", self.create_table, methods=["POST"])
        return router

    async def list_databases(self, request: Request, format: str = "json",
                             show_deleted: bool = False) -> Response:
        """The databases; with ``show_deleted`` also the soft-deleted ones (under their new
        names) with ``deleted`` and ``hard_deletion_date`` columns."""
        names = await request.app.state.catalog.databases()
        if show_deleted:
            gone = [r for r in await SoftDeletes(request.app.state.catalog).records()
                    if r.table is None]
            table = pa.table({
                "iox::database": pa.array(names + [r.database for r in gone], pa.string()),
                "deleted": pa.array([False] * len(names) + [True] * len(gone), pa.bool_()),
                "hard_deletion_date": pa.array([None] * len(names) + [
                    format_ms(r.hard_delete_at_ms) for r in gone], pa.string())})
        else:
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

    def _hard_delete_time(self, hard_delete_at: str | None, now_ms: int
                          ) -> tuple[int | None, bool] | Response:
        """``hard_delete_at`` as (time in ms or None for never, at once?), or the 400 answer."""
        try:
            return parse_hard_delete_at(hard_delete_at, now_ms, self.settings.hard_delete_default)
        except HardDeleteTimeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def delete_database(self, request: Request, db: str = "",
                              hard_delete_at: str | None = None) -> Response:
        """Soft-delete a database (persist/soft_deletes.py): renamed and hidden at once, its
        data removed at ``hard_delete_at``. ``hard_delete_at=now`` deletes catalog entries,
        buffered rows and Parquet files at once. Rows written before the deletion never come
        back under the old name (replays and buffers are dropped)."""
        catalog: Catalog = request.app.state.catalog
        now_ms = int(time.time() * 1000)
        when = self._hard_delete_time(hard_delete_at, now_ms)
        if isinstance(when, Response):
            return when
        hard_at, now = when
        soft = SoftDeletes(catalog, request.app.state.engine.store)
        if db and not await catalog.has_database(db):
            return await self._redelete(soft, await soft.record(db), hard_at, now, hard_delete_at)
        if not db:
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        await ContinuousQueryStore(catalog.redis, catalog.ns).drop_database(db)
        if now:
            await remove_objects(request, await catalog.delete_database(db, now_ms))
        else:
            await soft.soft_delete_database(db, hard_at, now_ms)
        await CacheCatalog(catalog.redis, catalog.ns).drop_table(db)
        return Response(status_code=200)

    async def delete_table(self, request: Request, db: str = "", table: str = "",
                           hard_delete_at: str | None = None) -> Response:
        """Soft-delete one table, like a database (``hard_delete_at=now``: at once); later
        writes start a new table afresh."""
        catalog: Catalog = request.app.state.catalog
        now_ms = int(time.time() * 1000)
        when = self._hard_delete_time(hard_delete_at, now_ms)
        if isinstance(when, Response):
            return when
        hard_at, now = when
        if not db or not await catalog.has_database(db):
            return JSONResponse({"error": f"database not found: {db}"}, status_code=404)
        soft = SoftDeletes(catalog, request.app.state.engine.store)
        if table and table not in await catalog.tables(db):
            return await self._redelete(soft, await soft.record(db, table), hard_at, now,
                                        hard_delete_at)
        if not table:
            return JSONResponse({"error": f"table not found: {table}"}, status_code=404)
        await CacheCatalog(catalog.redis, catalog.ns).drop_table(db, table)
        if now:
            await remove_objects(request, await catalog.delete_table(db, table, now_ms))
        else:
            await soft.soft_delete_table(db, table, hard_at, now_ms)
        return Response(status_code=200)

    @staticmethod
    async def _redelete(soft: SoftDeletes, record, hard_at: int | None, now: bool,
                        asked: str | None) -> Response:
        """DELETE of an already soft-deleted name: changes its hard-delete time (``now``:
        removes it at once); 409 when nothing would change, as InfluxDB 3 answers."""
        if record is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if now:
            await soft.hard_delete(record)
        elif (asked or "default") != "default" and hard_at != record.hard_delete_at_ms:
            await soft.set_hard_delete_at(record, hard_at)
        else:
            return PlainTextResponse("attempted to delete resource that was already deleted",
                                     status_code=409)
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
