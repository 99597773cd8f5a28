"""What a ``process_request`` plugin returns -> an HTTP response (pure), the way Flask turns
a view's return value into a response, since InfluxDB 3 plugins are written against that:

- ``str`` -> ``text/html``; ``bytes`` -> ``text/html`` as is;
- ``dict`` / ``list`` -> JSON (``application/json``);
- a tuple ``(body, status)``, ``(body, status, headers)`` or ``(body, headers)``;
- an object with ``get_data()`` / ``status_code`` / ``headers`` (a Flask ``Response``);
- any other iterable of ``str``/``bytes`` -> the chunks concatenated.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class BadResponse(TypeError):
    """The plugin returned something that is not a response."""


@dataclass
class PluginResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _header_dict(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(k): str(v) for k, v in raw}


def _body(value: Any) -> tuple[bytes, str | None]:
    """Body bytes and the content type it implies (None: leave it to the caller)."""
    if isinstance(value, str):
        return value.encode(), "text/html; charset=utf-8"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "text/html; charset=utf-8"
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode(), "application/json"
    if hasattr(value, "get_data") and hasattr(value, "status_code"):
        return value.get_data(), getattr(value, "mimetype", None) or getattr(value, "content_type", None)
    if isinstance(value, Iterable):
        chunks = [c.encode() if isinstance(c, str) else bytes(c) for c in value]
        return b"".join(chunks), "text/html; charset=utf-8"
    raise BadResponse(f"the plugin returned {type(value).__name__}, which is not a response "
                      "(return a str, bytes, dict, list or a (body, status[, headers]) tuple)")


def shape_response(value: Any) -> PluginResponse:
    status, headers = None, {}
    if isinstance(value, tuple):
        if len(value) == 3:
            value, status, raw = value
            headers = _header_dict(raw or {})
        elif len(value) == 2:
            value, second = value
            if isinstance(second, (Mapping, list)):
                headers = _header_dict(second)
            else:
                status = second
        else:
            raise BadResponse("a response tuple must be (body, status), (body, headers) or "
                              "(body, status, headers)")
    if value is None:
        raise BadResponse("the plugin returned None, which is not a response")
    body, content_type = _body(value)
    if hasattr(value, "status_code") and status is None:
        status = value.status_code
        headers = {**_header_dict(getattr(value, "headers", {}) or {}), **headers}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    return PluginResponse(int(status) if status is not None else 200, body, headers)
