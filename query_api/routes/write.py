"""Write routes (the write router): ``/api/v3/write_lp``, v1 ``/write``, v2 ``/api/v2/write`` and
influent's ``/api/v3/write_json`` (Telegraf JSON, rendered to line protocol first).

A body is admitted here (persist/admission.py, the checks the ingest agent runs too), so a bad
line is answered at once; the accepted lines go to the writes topic, rejected ones to the
rejected topic (query_api/writes.py)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from influent.config import Settings
from persist.admission import V1_PRECISIONS, V2_PRECISIONS, V3_PRECISIONS, v1_database
from query_api.metrics import ApiMetrics
from query_api.writes import WriteParams, WriteRouter


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

    async def route_write(self, request: Request, params: WriteParams) -> tuple[int, Any]:
        router = WriteRouter(self.settings, request.app.state.catalog, request.app.state.producer,
                             self.metrics.lines_written, self.metrics.lines_rejected)
        return await router.write(await request.body(), request.headers.get("content-encoding"),
                                  params)

    async def write_lp(self, request: Request, db: str | None = None, precision: str = "auto",
                       accept_partial: bool = True, no_sync: bool = False) -> Response:
        return write_response(*await self.route_write(request, WriteParams(
            db, precision, accept_partial, V3_PRECISIONS, no_sync)))

    async def write_json(self, request: Request, db: str | None = None, precision: str = "auto",
                         accept_partial: bool = True) -> Response:
        return write_response(*await self.route_write(request, WriteParams(
            db, precision, accept_partial, V3_PRECISIONS, body_format="json")))

    async def write_v1(self, request: Request, db: str | None = None, rp: str | None = None,
                       precision: str = "ns") -> Response:
        db = v1_database(db, rp) if db else db  # InfluxDB 3: db + rp -> database "db/rp"
        return write_response(*await self.route_write(request, WriteParams(
            db, precision, False, V1_PRECISIONS)))

    async def write_v2(self, request: Request, bucket: str | None = None,
                       precision: str = "ns") -> Response:
        status, body = await self.route_write(request, WriteParams(
            bucket, precision, False, V2_PRECISIONS))
        if status == 204:
            return Response(status_code=204)
        message = body.get("error", "")
        if isinstance(body.get("data"), dict):
            message = f"write buffer error: line protocol parse failed: {body['data']['error_message']}"
        code = {413: "request too large"}.get(status, "invalid")
        return JSONResponse({"code": code, "message": message}, status_code=status)


def write_response(status: int, body: Any) -> Response:
    return Response(status_code=204) if status == 204 else JSONResponse(body, status_code=status)
