"""The built-in explorer: a browser page served by the query API, and its pipeline endpoint.

- ``/`` redirects to ``/explorer/``, which serves the static page (HTML, JS, CSS in
  ``static/``, written by hand, no build step, nothing fetched from the internet);
- ``GET /api/v3/explorer/pipeline`` answers the pipeline panel's JSON (:mod:`.pipeline`).

The page holds no data: every panel reads the API's own endpoints with the API's token, so the
static files are served without one (:data:`PUBLIC_PATHS`) and the data keeps the API's auth.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from influent.config import Settings
from query_api.explorer.pipeline import PipelineReader

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: The static files of the page, by URL path.
FILES = {f"/explorer/{p.name}": p for p in sorted(STATIC.iterdir()) if p.suffix in CONTENT_TYPES}
#: Paths served without a token: the page's files, which carry no data.
PUBLIC_PATHS = frozenset({"/", "/explorer", "/explorer/", *FILES})


def explorer_router(reader: PipelineReader) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    @router.get("/explorer", include_in_schema=False)
    async def to_explorer() -> Response:
        return RedirectResponse("/explorer/", status_code=307)

    @router.get("/explorer/", include_in_schema=False)
    @router.get("/explorer/{name}", include_in_schema=False)
    async def static_file(name: str = "index.html") -> Response:
        path = FILES.get(f"/explorer/{name}")
        if path is None:
            return JSONResponse({"error": f"not found: /explorer/{name}"}, status_code=404)
        return FileResponse(path, media_type=CONTENT_TYPES[path.suffix],
                            headers={"Cache-Control": "no-cache"})

    @router.get("/api/v3/explorer/pipeline")
    async def pipeline(request: Request) -> Response:
        return JSONResponse(await reader.status(request.app.state.catalog))

    return router


def mount_explorer(app: FastAPI, settings: Settings) -> None:
    """Add the explorer's routes to ``app``; its Kafka clients close with the app."""
    reader = PipelineReader(settings)
    app.include_router(explorer_router(reader))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        async with inner(app_) as state:
            try:
                yield state
            finally:
                await reader.close()

    app.router.lifespan_context = lifespan
