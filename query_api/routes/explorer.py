"""Explorer routes: ``/`` and ``/explorer`` redirect to ``/explorer/``, which serves the page's
static files (:mod:`query_api.explorer`); ``GET /api/v3/explorer/pipeline`` answers the
pipeline panel's JSON (:class:`~query_api.explorer.pipeline.PipelineReader`)."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from influent.config import Settings
from query_api.explorer import CONTENT_TYPES, FILES
from query_api.explorer.pipeline import PipelineReader


class ExplorerRoutes:
    def __init__(self, settings: Settings):
        self.reader = PipelineReader(settings)

    def router(self) -> APIRouter:
        router = APIRouter()
        for path in ("/", "/explorer"):
            router.add_api_route(path, self.to_explorer, methods=["GET"], include_in_schema=False)
        router.add_api_route("/explorer/", self.static_file, methods=["GET"], include_in_schema=False)
        router.add_api_route("/explorer/{name}", self.static_file, methods=["GET"],
                             include_in_schema=False)
        router.add_api_route("/api/v3/explorer/pipeline", self.pipeline, methods=["GET"])
        return router

    def mount(self, app: FastAPI) -> None:
        """Add the routes to ``app``; the pipeline's Kafka clients close with the app."""
        app.include_router(self.router())
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app_: FastAPI):
            async with inner(app_) as state:
                try:
                    yield state
                finally:
                    await self.reader.close()

        app.router.lifespan_context = lifespan

    async def to_explorer(self) -> Response:
        return RedirectResponse("/explorer/", status_code=307)

    async def static_file(self, name: str = "index.html") -> Response:
        path = FILES.get(f"/explorer/{name}")
        if path is None:
            return JSONResponse({"error": f"not found: /explorer/{name}"}, status_code=404)
        return FileResponse(path, media_type=CONTENT_TYPES[path.suffix],
                            headers={"Cache-Control": "no-cache"})

    async def pipeline(self, request: Request) -> Response:
        return JSONResponse(await self.reader.status(request.app.state.catalog))
