"""Write routes (the write router): ``/api/v3/write_lp``, v1 ``/write``, v2 ``/api/v2/write`` and
influent's ``/api/v3/write_json`` (Telegraf JSON, rendered to line protocol first).

A body is parsed and checked against the catalog here, so a bad line is answered at once; the
accepted lines go to the writes topic, rejected ones to the rejected topic."""
from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from influent.config import Settings
from influent.model import validate_db_name
from persist.catalog import Catalog
from query_api.metrics import ApiMetrics
from query_api.write_json import render_json_body
from query_api.writes import BodyTooLarge, check_write, read_body, v3_error_body
from topics.line_protocol import parse_lp
from topics.wire import RejectedLine, now


class WriteRoutes:
    def __init__(self, settings: Settings, metrics: ApiMetrics):
        self.settings = settings
        self.metrics = metrics

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/api/v3/write_lp", self.write_lp, methods=["POST"])
        router.add_api_route("/api/v3/write_json", self.write_json, methods=["POST"])
        router.add_api_route("/write", self.write_v1, methods=["POST"])
        router.add_api_route("/api/v2/write", self.write_v2, methods=["POST"])
        return router

    async def route_write(self, request: Request, db: str | None, precision: str,
                          accept_partial: bool, as_json: bool = False) -> tuple[int, Any]:
        settings = self.settings
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
        json_view = None
        if as_json:  # Telegraf JSON: rendered to line protocol, then the same path
            try:
                json_view = await render_json_body(body, precision, db, request.app.state.catalog)
            except ValueError as exc:
                return 400, {"error": str(exc)}
            body, precision = json_view.body, "ns"
        default_time = time.time_ns()
        try:
            result = parse_lp(body, precision=precision, default_time=default_time)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        catalog: Catalog = request.app.state.catalog
        schemas = {name: await catalog.table_schema(db, name) for name in result.tables}
        checked = check_write(result, schemas, body)
        if json_view is not None:
            checked.errors = json_view.in_json_terms(checked.errors)
        if not checked.errors and not checked.valid_lines:
            return 400, {"error": "incoming write was empty"}
        producer: AIOKafkaProducer = request.app.state.producer
        if checked.errors:
            self.metrics.lines_rejected.inc(len(checked.errors))
            for err in checked.errors:
                record = RejectedLine(db, err.line, err.original, err.reason, "http", -1, -1, now())
                await producer.send(settings.rejected_topic, record.to_json(), key=db.encode())
            if not accept_partial or not checked.valid_lines:
                await producer.flush()
                return 400, v3_error_body(checked.errors, accept_partial)
        payload = body if not checked.errors else checked.body_of_valid_lines(body)
        headers = [("db", db.encode()), ("precision", precision.encode()),
                   ("content-type", b"text/plain")]  # line protocol, whatever its first byte
        await producer.send_and_wait(settings.writes_topic, payload, headers=headers)
        self.metrics.lines_written.inc(len(checked.valid_lines))
        if checked.errors:
            return 400, v3_error_body(checked.errors, True)
        return 204, None

    async def write_lp(self, request: Request, db: str | None = None, precision: str = "auto",
                       accept_partial: bool = True) -> Response:
        return write_response(*await self.route_write(request, db, precision, accept_partial))

    async def write_json(self, request: Request, db: str | None = None, precision: str = "auto",
                         accept_partial: bool = True) -> Response:
        return write_response(*await self.route_write(request, db, precision, accept_partial, True))

    async def write_v1(self, request: Request, db: str | None = None, rp: str | None = None,
                       precision: str = "ns") -> Response:
        if db and rp and rp not in ("autogen", "default"):
            db = f"{db}/{rp}"
        return write_response(*await self.route_write(request, db, precision, False))

    async def write_v2(self, request: Request, bucket: str | None = None,
                       precision: str = "ns") -> Response:
        status, body = await self.route_write(request, bucket, precision, False)
        if status == 204:
            return Response(status_code=204)
        message = body.get("error", "")
        if isinstance(body.get("data"), dict):
            message = f"write buffer error: line protocol parse failed: {body['data']['error_message']}"
        code = {413: "request too large"}.get(status, "invalid")
        return JSONResponse({"code": code, "message": message}, status_code=status)


def write_response(status: int, body: Any) -> Response:
    return Response(status_code=204) if status == 204 else JSONResponse(body, status_code=status)
