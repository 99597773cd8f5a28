"""Plugin files and plugin dry runs (InfluxDB 3's request and answer shapes):

| method | path | body | answer |
| --- | --- | --- | --- |
| POST, PUT | ``/api/v3/plugins/files`` | ``{plugin_name, content}`` | 200; 400 bad name or syntax |
| GET | ``/api/v3/plugins/files`` | | ``["name.py", ...]`` (influent) |
| POST | ``/api/v3/plugin_test/wal`` | ``{filename, database, input_lp, cache_name?, input_arguments?}`` | ``{log_lines, database_writes, errors}`` |
| POST | ``/api/v3/plugin_test/schedule`` | ``{filename, database, schedule?, cache_name?, input_arguments?}`` | ``{trigger_time, log_lines, database_writes, errors}`` |

A plugin named in a test is taken from the uploaded files first, then from the plugin
directory. A test writes nothing and leaves no log or cache entry behind; its queries read the
database as usual.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from processing_engine.dry_run import call_time_of, dry_run, input_batches, schedule_time, utc_now
from processing_engine.local_api import QueryError
from processing_engine.plugins import PluginNotFound, plugin_path
from processing_engine.rows import query_rows
from processing_engine.specs import SpecError
from influent.config import Settings
from persist.catalog import validate_db_name
from persist.plugin_files import PluginFiles

TEST_TIMEOUT = 60.0


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise _Refused(400, "the body must be JSON")
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    return body


def _arguments(body: dict[str, Any]) -> dict[str, str] | None:
    raw = body.get("input_arguments")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _Refused(400, "'input_arguments' must be an object of strings")
    return {str(k): str(v) for k, v in raw.items()}


def plugin_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    def files(request: Request) -> PluginFiles:
        return PluginFiles(request.app.state.catalog.redis, settings.app_id)

    async def source_of(request: Request, filename: str) -> str:
        if not filename:
            raise _Refused(400, "'filename' is required")
        uploaded = await files(request).get(filename)
        if uploaded is not None:
            return uploaded
        try:
            path = plugin_path(settings.plugins_path, filename)
        except PluginNotFound as exc:
            raise _Refused(404, str(exc))
        if path.is_dir():
            raise _Refused(400, f"{filename} is a plugin package; test a single-file plugin")
        return await asyncio.to_thread(path.read_text)

    def query_for(request: Request, loop: asyncio.AbstractEventLoop):
        engine = request.app.state.engine

        def query(db: str, sql: str, params: dict | None) -> list[dict[str, Any]]:
            future = asyncio.run_coroutine_threadsafe(engine.sql(db, sql, params), loop)
            try:
                return query_rows(future.result(TEST_TIMEOUT))
            except Exception as exc:  # the engine's errors, as the plugin API raises them
                raise QueryError(str(exc)) from exc

        return query

    def answering(handler):
        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
        route.__name__ = handler.__name__
        return route

    @router.api_route("/api/v3/plugins/files", methods=["POST", "PUT"])
    @answering
    async def upload(request: Request) -> Response:
        body = await _body(request)
        name, content = body.get("plugin_name"), body.get("content")
        if not isinstance(name, str) or not isinstance(content, str):
            raise _Refused(400, "'plugin_name' and 'content' (strings) are required")
        try:
            await files(request).put(name, content)
        except SyntaxError as exc:
            raise _Refused(400, f"plugin {name} does not compile: {exc}")
        except ValueError as exc:
            raise _Refused(400, str(exc))
        return Response(status_code=200)

    @router.get("/api/v3/plugins/files")
    async def list_files(request: Request) -> Response:
        return JSONResponse(await files(request).names())

    async def common(request: Request) -> tuple[dict[str, Any], str, str, dict | None]:
        body = await _body(request)
        database = str(body.get("database") or "")
        problem = validate_db_name(database)
        if problem:
            raise _Refused(400, problem)
        source = await source_of(request, str(body.get("filename") or ""))
        return body, database, source, _arguments(body)

    @router.post("/api/v3/plugin_test/wal")
    @answering
    async def test_wal(request: Request) -> Response:
        body, database, source, args = await common(request)
        input_lp = body.get("input_lp")
        if not isinstance(input_lp, str):
            raise _Refused(400, "'input_lp' (line protocol text) is required")
        batches, bad_lines = input_batches(input_lp, time.time_ns())
        outcome = await dry_run(source, body["filename"], database, "process_writes",
                                lambda api: (api, batches, args),
                                query_for(request, asyncio.get_running_loop()), TEST_TIMEOUT)
        outcome.errors[:0] = bad_lines
        return JSONResponse(outcome.to_json())

    @router.post("/api/v3/plugin_test/schedule")
    @answering
    async def test_schedule(request: Request) -> Response:
        body, database, source, args = await common(request)
        try:
            instant = schedule_time(body.get("schedule"), utc_now())
        except SpecError as exc:
            raise _Refused(400, str(exc))
        call_time = call_time_of(instant)
        outcome = await dry_run(source, body["filename"], database, "process_scheduled_call",
                                lambda api: (api, call_time, args),
                                query_for(request, asyncio.get_running_loop()), TEST_TIMEOUT)
        outcome.trigger_time = instant.isoformat().replace("+00:00", "Z")
        return JSONResponse(outcome.to_json())

    return router
