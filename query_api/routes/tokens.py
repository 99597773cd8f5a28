"""Token endpoints (InfluxDB 3's admin token API, plus database-scoped resource tokens) and
the HTTP authorization step the API's middleware calls.

| method | path | body / query | answer |
| --- | --- | --- | --- |
| POST | ``/api/v3/configure/token/admin`` | | 201 ``_admin`` (``*``); 409 when it exists |
| POST | ``/api/v3/configure/token/admin/regenerate`` | | 201 a new secret for ``_admin`` |
| POST | ``/api/v3/configure/token/named_admin`` | ``{token_name, expiry_secs?}`` | 201; 409 name taken |
| POST | ``/api/v3/configure/token`` | ``{token_name, permissions, expiry_secs?, description?}`` | 201 (influent; also at ``/api/v3/enterprise/configure/token``) |
| GET | ``/api/v3/configure/token`` | | the tokens, without secrets |
| DELETE | ``/api/v3/configure/token`` | ``?token_name=`` | 200; 404; 405 for ``_admin`` |

A 201 answer is the only time the secret is shown:
``{"id", "name", "token", "hash", "permissions", "created_at", "expiry"}``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from persist.tokens import ADMIN_NAME, ALL, TokenError, TokenRecord, TokenStore, parse_permissions
from query_api.routes.common import BadRequest, json_args
from query_api.auth import ANY, OPEN, TokenAuthority, credentials, denied, request_needs

BODY_PATHS = ("/api/v3/query_sql", "/api/v3/query_influxql", "/query")


async def request_args(request: Request) -> dict[str, Any]:
    """Query parameters plus, for POSTed queries, the JSON or form body's values."""
    args: dict[str, Any] = dict(request.query_params)
    if request.method == "POST" and request.url.path in BODY_PATHS:
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        if raw and "json" in ctype:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                args.update(json_args(body))
        elif raw and "x-www-form-urlencoded" in ctype:
            args.update(dict(parse_qsl(raw.decode(errors="replace"))))
    return args


async def authorize(request: Request) -> Response | None:
    """None when the request may go on; else the empty 401/403 answer (as InfluxDB 3)."""
    if request_needs(request.method, request.url.path, {}) == [OPEN]:
        return None  # before any catalog lookup: /health answers while Redis is down
    authority: TokenAuthority = request.app.state.tokens
    if not await authority.enabled():
        return None
    try:
        needs = request_needs(request.method, request.url.path, await request_args(request))
    except BadRequest:  # a body the route refuses (400) anyway; only a valid token gets that far
        needs = [ANY]
    principal = await authority.authenticate(credentials(request.headers, request.query_params))
    if principal is None:
        return Response(status_code=401)
    if denied(principal, needs):
        return Response(status_code=403)
    request.state.principal = principal
    return None


def _created(record: TokenRecord, secret: str) -> JSONResponse:
    body = record.public()
    body["token"] = secret
    return JSONResponse(body, status_code=201)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TokenError(400, "the body must be JSON")
    if not isinstance(body, dict):
        raise TokenError(400, "the body must be a JSON object")
    return body


def _expiry(body: dict[str, Any]) -> int | None:
    raw = body.get("expiry_secs")
    if raw is None:
        return None
    if not isinstance(raw, int) or raw <= 0:
        raise TokenError(400, "'expiry_secs' must be a positive integer")
    return raw


def token_router() -> APIRouter:
    router = APIRouter()

    def store(request: Request) -> TokenStore:
        return request.app.state.tokens.store

    def answering(handler):
        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except TokenError as exc:
                return PlainTextResponse(str(exc), status_code=exc.status)
            request.app.state.tokens.forget()
            return response
        route.__name__ = handler.__name__
        return route

    @router.post("/api/v3/configure/token/admin")
    @answering
    async def create_admin(request: Request) -> Response:
        return _created(*await store(request).create(ADMIN_NAME, (ALL,)))

    @router.post("/api/v3/configure/token/admin/regenerate")
    @answering
    async def regenerate_admin(request: Request) -> Response:
        return _created(*await store(request).regenerate(ADMIN_NAME))

    @router.post("/api/v3/configure/token/named_admin")
    @answering
    async def create_named_admin(request: Request) -> Response:
        body = await _body(request)
        return _created(*await store(request).create(str(body.get("token_name") or ""), (ALL,),
                                                     _expiry(body)))

    @router.post("/api/v3/configure/token")
    @router.post("/api/v3/enterprise/configure/token")
    @answering
    async def create_resource_token(request: Request) -> Response:
        body = await _body(request)
        permissions = parse_permissions(body.get("permissions"))
        description = body.get("description")
        return _created(*await store(request).create(
            str(body.get("token_name") or ""), permissions, _expiry(body),
            str(description) if description is not None else None))

    @router.get("/api/v3/configure/token")
    async def list_tokens(request: Request) -> Response:
        return JSONResponse([r.public() for r in await store(request).list()])

    @router.delete("/api/v3/configure/token")
    @answering
    async def delete_token(request: Request) -> Response:
        name = request.query_params.get("token_name") or ""
        if not name:
            body = await _body(request)
            name = str(body.get("token_name") or "")
        if name == ADMIN_NAME:
            raise TokenError(405, "the operator token _admin cannot be deleted; regenerate it")
        await store(request).delete(name)
        return Response(status_code=200)

    return router
