"""The built-in explorer's own parts: the browser page's static files (``static/``: HTML, JS
and CSS written by hand, no build step, nothing fetched from the internet) and the pipeline
panel's reader (:mod:`.pipeline`). The routes that serve them are
:mod:`query_api.routes.explorer`.

The page holds no data: every panel reads the API's own endpoints with the API's token, so the
static files are served without one (:data:`PUBLIC_PATHS`) and the data keeps the API's auth.
"""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: The static files of the page, by URL path.
FILES = {f"/explorer/{p.name}": p for p in sorted(STATIC.iterdir()) if p.suffix in CONTENT_TYPES}
#: Paths served without a token: the page's files, which carry no data.
PUBLIC_PATHS = frozenset({"/", "/explorer", "/explorer/", *FILES})
