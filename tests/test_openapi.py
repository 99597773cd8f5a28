"""The published OpenAPI schema (pure: the app is built, not started): every route is described
with the parameters and body it reads and the 5xx it may answer, under a unique operation id."""
from __future__ import annotations

from influent.config import Settings
from query_api.openapi import OPERATIONS
from query_api.server import create_api


def published() -> dict:
    return create_api(Settings()).openapi()


def test_every_route_has_a_description_and_nothing_else_does():
    """FastAPI lists every route of the app (but the explorer's files) in the schema."""
    paths = published()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served == set(OPERATIONS)


def test_operation_ids_are_unique():
    schema = published()
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_routes_that_read_the_raw_request_publish_what_they_read():
    schema = published()
    paths = schema["paths"]
    sql = {p["name"] for p in paths["/api/v3/query_sql"]["get"]["parameters"]}
    assert {"q", "db", "format", "params"} <= sql
    assert "application/json" in paths["/api/v3/query_sql"]["post"]["requestBody"]["content"]
    assert "text/plain" in paths["/api/v3/write_lp"]["post"]["requestBody"]["content"]
    token = paths["/api/v3/configure/token"]["post"]["requestBody"]["content"]["application/json"]
    assert {"token_name", "permissions"} <= set(token["schema"]["properties"])


def test_the_documented_server_errors():
    schema = published()
    paths = schema["paths"]
    for method in ("get", "post"):
        assert {"503", "504"} <= set(paths["/api/v3/query_sql"][method]["responses"])
        assert "504" in paths["/query"][method]["responses"]
    assert "503" in paths["/api/v3/write_lp"]["post"]["responses"]
    assert "503" in paths["/ready"]["get"]["responses"]
    assert "500" in paths["/api/v3/engine/{path}"]["post"]["responses"]
    assert not any(code.startswith("5") for code in paths["/health"]["get"]["responses"])
