"""Small request helpers the route modules share (pure apart from reading the request)."""
from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request


async def query_args(request: Request) -> dict[str, Any]:
    """The query string, plus a POSTed JSON object or form: InfluxDB accepts either."""
    args: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        raw = await request.body()
        if raw and "json" in ctype:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        elif raw:
            form = await request.form()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


async def json_body(request: Request) -> dict:
    """The request's JSON object, or ``{}`` when the body is empty or not an object."""
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
