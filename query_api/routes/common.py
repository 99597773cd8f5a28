"""Small request helpers the route modules share (pure apart from reading the request), and
:class:`BadRequest`, which any route may raise for a value of the wrong type (the app answers it
400 naming the value)."""
from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request


async def query_args(request: Request) -> dict[str, Any]:
    """The query string, plus a POSTed JSON object or form: InfluxDB accepts either. JSON
    values come as the query string would carry them (:func:`json_args`)."""
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
                args.update(json_args(body))
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


class BadRequest(ValueError):
    """A request value a route cannot use; the app answers 400 with this message."""


def json_args(body: dict[str, Any]) -> dict[str, Any]:
    """A JSON body's values as query-string values: numbers and booleans as their JSON text,
    nulls dropped; ``params`` (bound parameters) stays an object. :class:`BadRequest` for any
    other list or object."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if key == "params" or isinstance(value, str):
            out[key] = value
        elif isinstance(value, (bool, int, float)):
            out[key] = orjson.dumps(value).decode()
        else:
            raise BadRequest(f"'{key}' must be a string, not {type(value).__name__}")
    return out


def text_field(body: dict, key: str) -> str:
    """``body[key]`` as a string: "" when absent or null, :class:`BadRequest` when not text."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, not {type(value).__name__}")
    return value


def text_list(body: dict, key: str) -> list[str]:
    """``body[key]`` as a list of strings ([] when absent or null); :class:`BadRequest` else."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{key}' must be a list of strings")
    return value
