"""The API's published contract at ``/openapi.json``: what each route reads and what it may answer.

Most routes read the raw request (InfluxDB accepts a query string, a JSON body or a form for the
same call), so FastAPI alone would publish them without parameters or bodies. This module adds,
per operation, the query parameters and the request body the route reads, and the error statuses
it may answer, 5xx included (503 when Kafka or Redis cannot be reached, 504 when a query runs past
its time limit), so that clients and the API fuzzer (``tests/api_fuzzing.py``) know the whole
surface. It changes only the published schema, never how a request is handled.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
INTEGER: dict[str, Any] = {"type": "integer"}
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}

#: Statuses a route may answer besides its own, by what they mean.
UNAVAILABLE = {503: "Kafka or Redis (the catalog) cannot be reached; retry later"}
AUTH = {401: "authentication is on and no valid token was presented",
        403: "the token does not allow this request"}
TIMEOUT = {504: "the query ran past its time limit (INFLUENT_QUERY_TIMEOUT)"}


@dataclass(frozen=True)
class Param:
    """One query (or path) parameter a route reads."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: STRING)
    example: Any = None
    location: str = "query"

    def to_openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.location, "required": False,
                               "description": self.description, "schema": self.schema}
        if self.example is not None:
            out["example"] = self.example
        return out


@dataclass(frozen=True)
class Operation:
    """What one ``(method, path)`` reads and the statuses it may answer beyond 200."""

    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # media type -> schema
    responses: dict[int, str] = field(default_factory=dict)


def json_object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


DB = Param("db", "database name", example="mydb")
TABLE = Param("table", "table (measurement) name", example="cpu")
FORMAT = Param("format", "answer format: json, jsonl, csv, pretty or parquet", example="json")
PARAMS = Param("params", "bound parameters, a JSON object ($name -> value)", example='{"host": "a"}')
PRECISION = Param("precision", "timestamp unit of the lines (auto, ns, us, ms, s, ...)", example="ns")
SQL = Param("q", "the SQL query", example="SELECT * FROM cpu LIMIT 5")
INFLUXQL = Param("q", "the InfluxQL query (statements separated by ;)", example="SELECT * FROM cpu LIMIT 5")
V1_QUERY = (INFLUXQL, DB, Param("rp", "retention policy"), Param("epoch", "timestamp unit of the answer"),
            PARAMS, Param("chunked", "true: one JSON object per chunk"),
            Param("chunk_size", "values per chunk", example="10000"),
            Param("pretty", "true: indented JSON"), Param("u", "user (ignored)"),
            Param("p", "token, as InfluxDB 1.x's password"))
SQL_BODY = json_object(db=STRING, q=STRING, format=STRING, params={"type": "object"})
INFLUXQL_BODY = json_object(db=STRING, q=STRING, format=STRING, params={"type": "object"},
                            rp=STRING, epoch=STRING, chunked=STRING, chunk_size=STRING, pretty=STRING)
LINE_PROTOCOL = {"text/plain": {"type": "string", "example": "cpu,host=a usage=1.5 1700000000000000000"}}
WRITE_ERRORS = {400: "a line or a parameter is invalid; the answer names each rejected line",
                413: "the body is larger than INFLUENT_MAX_BODY_BYTES", **AUTH, **UNAVAILABLE}
PARTITION_TEMPLATE = json_object(time_format=STRING, tags=STRINGS)
TRIGGER_TARGET = json_object(db=STRING, trigger_name=STRING, force=BOOLEAN)
PLUGIN_TEST = json_object(filename=STRING, database=STRING, input_lp=STRING, schedule=STRING,
                          cache_name=STRING, input_arguments={"type": "object"})
TOKEN_BODY = json_object(token_name=STRING, permissions=STRINGS, expiry_secs=INTEGER,
                         description=STRING)
CONFIG_ERRORS = {400: "the request is invalid (the answer says why)", **AUTH, **UNAVAILABLE}

# Operations keyed by (METHOD, path); every route of the app has one (tests/test_openapi.py).
def _cache_operations(kind: str, body: dict[str, Any]) -> dict[tuple[str, str], Operation]:
    """POST and DELETE of ``/api/v3/configure/<kind>_cache`` (query_api/routes/caches.py)."""
    path = f"/api/v3/configure/{kind}_cache"
    return {
        ("POST", path): Operation(
            f"create a {kind} value cache", (), {"application/json": body},
            {201: "created; the answer is the definition", 404: "database or table not found",
             409: "the table has a cache of that name", **CONFIG_ERRORS}),
        ("DELETE", path): Operation(
            f"delete a {kind} value cache", (DB, TABLE, Param("name", "cache name")),
            {"application/json": json_object(db=STRING, table=STRING, name=STRING)},
            {404: "cache not found", **CONFIG_ERRORS}),
    }


_QUERY_SQL = Operation("SQL query", (SQL, DB, FORMAT, PARAMS),
                       {"application/json": SQL_BODY, "application/x-www-form-urlencoded": SQL_BODY},
                       {400: "the query is invalid", 404: "database not found", **AUTH, **TIMEOUT,
                        **UNAVAILABLE})
_QUERY_V1 = Operation("InfluxQL query, InfluxDB 1.x answer", V1_QUERY,
                      {"application/json": INFLUXQL_BODY,
                       "application/x-www-form-urlencoded": INFLUXQL_BODY},
                      {400: "the query is invalid", **AUTH, **TIMEOUT, **UNAVAILABLE})
_QUERY_INFLUXQL = Operation("InfluxQL query, InfluxDB 3 answer", (INFLUXQL, DB, FORMAT, PARAMS),
                            {"application/json": INFLUXQL_BODY,
                             "application/x-www-form-urlencoded": INFLUXQL_BODY},
                            {400: "the query is invalid", 404: "database not found", **AUTH,
                             **TIMEOUT, **UNAVAILABLE})
_PLUGIN_FILE = Operation("upload a plugin file", (),
                         {"application/json": json_object(plugin_name=STRING, content=STRING)},
                         CONFIG_ERRORS)
_TOKEN = Operation("create a database-scoped token", (), {"application/json": TOKEN_BODY},
                   {201: "created; the answer holds the secret", 409: "the name is taken",
                    **CONFIG_ERRORS})
_REQUEST_TRIGGER = Operation(
    "call the request trigger bound to this path", (), {"application/octet-stream": STRING},
    {404: "no enabled trigger has this path",
     500: "the plugin raised or returned an answer that cannot be sent (the error says which)",
     **AUTH, **UNAVAILABLE})

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("liveness: 200 while the process serves"),
    ("GET", "/api/v1/health"): Operation("liveness: 200 while the process serves"),
    ("GET", "/ping"): Operation("version headers, as InfluxDB"),
    ("POST", "/ping"): Operation("version headers, as InfluxDB"),
    ("GET", "/ready"): Operation("readiness", (), None,
                                 {503: "not ready: the catalog, the write producer or the Flight "
                                       "server is not available (the answer says which)"}),
    ("GET", "/metrics"): Operation("Prometheus metrics", (), None, {**AUTH, **UNAVAILABLE}),
    ("GET", "/api/v3/query_sql"): _QUERY_SQL,
    ("POST", "/api/v3/query_sql"): _QUERY_SQL,
    ("GET", "/query"): _QUERY_V1,
    ("POST", "/query"): _QUERY_V1,
    ("GET", "/api/v3/query_influxql"): _QUERY_INFLUXQL,
    ("POST", "/api/v3/query_influxql"): _QUERY_INFLUXQL,
    ("POST", "/api/v3/write_lp"): Operation("write line protocol", (), LINE_PROTOCOL, WRITE_ERRORS),
    ("POST", "/write"): Operation("write line protocol, InfluxDB 1.x", (), LINE_PROTOCOL, WRITE_ERRORS),
    ("POST", "/api/v2/write"): Operation("write line protocol, InfluxDB 2", (), LINE_PROTOCOL,
                                         WRITE_ERRORS),
    ("POST", "/api/v3/write_json"): Operation(
        "write Telegraf JSON metrics", (),
        {"application/json": {"type": "object", "properties": {
            "metrics": {"type": "array", "items": json_object(
                name=STRING, tags={"type": "object"}, fields={"type": "object"},
                timestamp=INTEGER)}}}},
        WRITE_ERRORS),
    ("GET", "/api/v3/configure/database"): Operation("list databases", (), None,
                                                     {**CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/database"): Operation(
        "create a database", (),
        {"application/json": json_object(db=STRING, retention_period=STRING,
                                         partition_template=PARTITION_TEMPLATE)},
        {409: "the database exists", **CONFIG_ERRORS}),
    ("PUT", "/api/v3/configure/database"): Operation(
        "set or clear a database's retention period", (),
        {"application/json": json_object(db=STRING, retention_period=STRING)},
        {204: "updated", 404: "database not found", **CONFIG_ERRORS}),
    ("DELETE", "/api/v3/configure/database"): Operation(
        "delete a database and its files", (), None, {404: "database not found", **CONFIG_ERRORS}),
    ("GET", "/api/v3/configure/table"): Operation("list a database's tables and columns", (), None,
                                                  {404: "database not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/table"): Operation(
        "create a table", (),
        {"application/json": json_object(
            db=STRING, table=STRING, tags=STRINGS,
            fields={"type": "array", "items": json_object(name=STRING, type=STRING)},
            partition_template=PARTITION_TEMPLATE)},
        {409: "the table exists or a column clashes", **CONFIG_ERRORS}),
    ("PUT", "/api/v3/configure/table"): Operation(
        "set or clear a table's retention period", (),
        {"application/json": json_object(db=STRING, table=STRING, retention_period=STRING)},
        {204: "updated", 404: "database or table not found", **CONFIG_ERRORS}),
    ("DELETE", "/api/v3/configure/table"): Operation(
        "delete a table and its files", (), None,
        {404: "database or table not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/database/retention_period"): Operation(
        "set a database's retention period", (), None,
        {204: "updated", 404: "database not found", **CONFIG_ERRORS}),
    ("DELETE", "/api/v3/configure/database/retention_period"): Operation(
        "clear a database's retention period", (), None,
        {204: "updated", 404: "database not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/table/retention_period"): Operation(
        "set a table's retention period", (), None,
        {204: "updated", 404: "database or table not found", **CONFIG_ERRORS}),
    ("DELETE", "/api/v3/configure/table/retention_period"): Operation(
        "clear a table's retention period", (), None,
        {204: "updated", 404: "database or table not found", **CONFIG_ERRORS}),
    **_cache_operations("last", json_object(
        db=STRING, table=STRING, name=STRING, key_columns=STRINGS, value_columns=STRINGS,
        count=INTEGER, ttl=INTEGER)),
    **_cache_operations("distinct", json_object(
        db=STRING, table=STRING, name=STRING, columns=STRINGS, max_cardinality=INTEGER,
        max_age=INTEGER)),
    ("POST", "/api/v2/delete"): Operation(
        "delete rows (InfluxDB 2)", (),
        {"application/json": json_object(start=STRING, stop=STRING, predicate=STRING,
                                         bucket=STRING)},
        {204: "deleted", 404: "database or table not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/subscription"): Operation(
        "create a subscription", (),
        {"application/json": json_object(db=STRING, name=STRING, destination=STRING,
                                         destinations=STRINGS, mode=STRING, tables=STRINGS,
                                         predicate=STRING)},
        {201: "created", 404: "database not found", 409: "the subscription exists",
         **CONFIG_ERRORS}),
    ("GET", "/api/v3/configure/subscription"): Operation("list subscriptions", (), None,
                                                         CONFIG_ERRORS),
    ("DELETE", "/api/v3/configure/subscription"): Operation(
        "delete a subscription", (DB, Param("name", "subscription name")),
        {"application/json": json_object(db=STRING, name=STRING)},
        {404: "subscription not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/processing_engine_trigger"): Operation(
        "create a processing-engine trigger", (),
        {"application/json": json_object(
            db=STRING, trigger_name=STRING, plugin_filename=STRING,
            trigger_specification=STRING, trigger_settings={"type": "object"},
            trigger_arguments={"type": "object"}, disabled=BOOLEAN)},
        {404: "database not found", 409: "the trigger or its request path exists",
         **CONFIG_ERRORS}),
    ("GET", "/api/v3/configure/processing_engine_trigger"): Operation(
        "list triggers", (), None, CONFIG_ERRORS),
    ("DELETE", "/api/v3/configure/processing_engine_trigger"): Operation(
        "delete a trigger", (DB, Param("trigger_name", "trigger name"), Param("force", "true or 1")),
        {"application/json": TRIGGER_TARGET},
        {404: "trigger not found", 409: "the trigger is enabled (use force)", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/processing_engine_trigger/enable"): Operation(
        "enable a trigger", (DB, Param("trigger_name", "trigger name")),
        {"application/json": TRIGGER_TARGET}, {404: "trigger not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/processing_engine_trigger/disable"): Operation(
        "disable a trigger", (DB, Param("trigger_name", "trigger name")),
        {"application/json": TRIGGER_TARGET}, {404: "trigger not found", **CONFIG_ERRORS}),
    **{(method, "/api/v3/engine/{path}"): _REQUEST_TRIGGER
       for method in ("GET", "POST", "PUT", "DELETE", "PATCH")},
    ("GET", "/api/v3/explorer/pipeline"): Operation("the explorer's pipeline panel", (), None,
                                                    {**AUTH, **UNAVAILABLE}),
    ("POST", "/api/v3/configure/token/admin"): Operation(
        "create the operator token _admin", (), None,
        {201: "created; the answer holds the secret", 409: "_admin exists", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/token/admin/regenerate"): Operation(
        "a new secret for _admin", (), None,
        {201: "regenerated; the answer holds the secret", 404: "no _admin token",
         **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/token/named_admin"): Operation(
        "create a named admin token", (),
        {"application/json": json_object(token_name=STRING, expiry_secs=INTEGER)},
        {201: "created; the answer holds the secret", 409: "the name is taken", **CONFIG_ERRORS}),
    ("POST", "/api/v3/configure/token"): _TOKEN,
    ("POST", "/api/v3/enterprise/configure/token"): _TOKEN,
    ("GET", "/api/v3/configure/token"): Operation("list tokens (no secrets)", (), None,
                                                  {**AUTH, **UNAVAILABLE}),
    ("DELETE", "/api/v3/configure/token"): Operation(
        "delete a token", (Param("token_name", "token name"),),
        {"application/json": json_object(token_name=STRING)},
        {404: "token not found", 405: "_admin cannot be deleted", **CONFIG_ERRORS}),
    ("GET", "/api/v3/plugins/files"): Operation("list uploaded plugin files", (), None,
                                                {**AUTH, **UNAVAILABLE}),
    ("POST", "/api/v3/plugins/files"): _PLUGIN_FILE,
    ("PUT", "/api/v3/plugins/files"): _PLUGIN_FILE,
    ("POST", "/api/v3/plugin_test/wal"): Operation(
        "dry-run a WAL plugin on line protocol", (), {"application/json": PLUGIN_TEST},
        {404: "plugin not found", **CONFIG_ERRORS}),
    ("POST", "/api/v3/plugin_test/schedule"): Operation(
        "dry-run a schedule plugin", (), {"application/json": PLUGIN_TEST},
        {404: "plugin not found", **CONFIG_ERRORS}),
}


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's) with each operation's parameters, body and responses added, and
    an operation id unique per method and path."""
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            op["operationId"] = re.sub(r"\W+", "_", f"{method}{path}").strip("_")
            documented = OPERATIONS.get((method.upper(), path))
            if documented is None:
                continue
            op["summary"] = documented.summary
            known = {p["name"] for p in op.get("parameters", [])}
            extra = [p.to_openapi() for p in documented.params if p.name not in known]
            if extra:
                op["parameters"] = op.get("parameters", []) + extra
            if documented.body is not None and "requestBody" not in op:
                op["requestBody"] = {"required": False, "content": {
                    media: {"schema": body} for media, body in documented.body.items()}}
            for status, meaning in documented.responses.items():
                op.setdefault("responses", {}).setdefault(str(status), {"description": meaning})
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s schema at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # one route with several methods: ids fixed below
                warnings.filterwarnings("ignore", message="Duplicate Operation ID")
                schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                     description=app.description)
            app.openapi_schema = describe(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
