"""Tokens: the permission rules (pure), the token store and its per-process cache (real Redis),
and the matrix endpoint x token kind -> allowed / 401 / 403 over HTTP, Flight and Flight SQL on
two API replicas (real Kafka and Redis), with revocation seen by both."""
from __future__ import annotations

import asyncio
import base64
import json
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import httpx
import pyarrow.flight as flight
import pytest
import redis.asyncio as aioredis
from adbc_driver_flightsql import DatabaseOptions

from influent.config import Settings
from influent.devstack import free_port
from persist.tokens import Principal, TokenError, TokenStore, parse_permissions
from query_api.auth import ADMIN, ANY, OPEN, Need, TokenAuthority, denied, influxql_needs, request_needs
from tests.harness import start_api, unique, wait_for

BOOT = "bootstrap-secret"


# ---- pure rules ------------------------------------------------------------------------------


def test_permissions_parse_and_allow():
    assert parse_permissions(["*"]) == ("*",)
    assert parse_permissions(["db:a,b:read", {"resource_type": "db", "resource_names": ["c"],
                                              "actions": ["write"]}]) == ("db:a,b:read", "db:c:write")
    for bad in (["db:a:delete"], ["table:a:read"], [], "db:a:read", ["db::read"]):
        with pytest.raises(TokenError):
            parse_permissions(bad)
    reader = Principal("r", ("db:a,b:read",))
    assert reader.allows("read", "a") and reader.allows("read", "b")
    assert not reader.allows("write", "a") and not reader.allows("read", "c")
    assert Principal("w", ("db:*:write",)).allows("write", "any") and \
        not Principal("w", ("db:*:write",)).allows("read", "any")
    assert Principal("x", ("*",)).allows("write", "z")


def test_request_needs():
    assert request_needs("GET", "/health", {}) == [OPEN]
    assert request_needs("OPTIONS", "/api/v3/write_lp", {}) == [OPEN]
    assert request_needs("POST", "/api/v3/write_lp", {"db": "a"}) == [Need("write", "a")]
    assert request_needs("POST", "/write", {"db": "a", "rp": "r"}) == [Need("write", "a/r")]
    assert request_needs("POST", "/api/v2/write", {"bucket": "a"}) == [Need("write", "a")]
    assert request_needs("GET", "/api/v3/query_sql", {"db": "a"}) == [Need("read", "a")]
    assert request_needs("GET", "/api/v3/configure/database", {}) == [ADMIN]
    assert request_needs("POST", "/api/v3/engine/hook", {}) == [ADMIN]
    assert request_needs("GET", "/metrics", {}) == [ANY]
    assert request_needs("GET", "/explorer/", {}) == [OPEN]
    assert request_needs("GET", "/api/v3/explorer/pipeline", {}) == [ANY]
    assert influxql_needs("SELECT * FROM cpu; SELECT * FROM other..m", "a") == [
        Need("read", "a"), Need("read", "other")]
    assert influxql_needs("CREATE DATABASE x", None) == [ADMIN]
    assert influxql_needs("DROP MEASUREMENT m", "a") == [Need("write", "a")]
    assert influxql_needs("SHOW TAG KEYS ON b", "a") == [Need("read", "b")]
    assert influxql_needs("SHOW DATABASES", None) == [ANY]
    assert influxql_needs("SELEC nonsense", "a") == [ANY]
    assert denied(Principal("r", ("db:a:read",)), [Need("read", "a"), Need("write", "a")])
    assert not denied(Principal("r", ("db:a:read",)), [Need("read", "a"), ANY])


# ---- store and cache (real Redis) ------------------------------------------------------------


async def test_store_hashes_and_revocation_is_seen_by_the_cache(redis_url):
    client = aioredis.from_url(redis_url)
    try:
        ns = unique("tok")
        store = TokenStore(client, ns)
        record, secret = await store.create("reader", ("db:a:read",))
        assert secret.startswith("apiv3_") and secret not in json.dumps(
            {k.decode(): v.decode() for k, v in (await client.hgetall(f"{ns}:tokens")).items()})
        with pytest.raises(TokenError) as taken:
            await store.create("reader", ("*",))
        assert taken.value.status == 409
        replica = TokenAuthority(TokenStore(client, ns))  # another API process's view
        assert await replica.enabled()
        assert await replica.authenticate(secret) == Principal("reader", ("db:a:read",))
        assert await replica.authenticate("apiv3_wrong") is None
        await store.delete("reader")
        # the replica's cached answer lives at most CACHE_SECONDS; when its next check is due
        # it reads the version, sees the change and drops every cached lookup
        replica._checked -= 1.0
        assert await replica.authenticate(secret) is None
        record2, secret2 = await store.create("short", ("*",), expiry_secs=3600)
        assert record2.expiry is not None and await store.resolve(secret2) is not None
        _, fresh = await store.regenerate("short")
        assert await store.resolve(secret2) is None and await store.resolve(fresh) is not None
    finally:
        await client.aclose()


# ---- the matrix over real API replicas ---------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(kafka_bootstrap, redis_url, tmp_path_factory):
    """Two API processes on one catalog, INFLUENT_TOKEN as the bootstrap admin token."""
    state = tmp_path_factory.mktemp("tokens")
    first = Settings(state_dir=state, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                     topic_prefix=unique("k") + ".", partitions=1, token=BOOT,
                     http_bind=f"127.0.0.1:{free_port()}")
    second = first.replace(http_bind=f"127.0.0.1:{free_port()}", state_dir=state / "second")
    procs = [start_api(first), start_api(second)]
    try:
        yield first, second
    finally:
        for proc in procs:
            proc.stop()


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def make_token(base: str, name: str, permissions: list[str] | None) -> str:
    if permissions is None:
        resp = httpx.post(f"{base}/api/v3/configure/token/named_admin", headers=_auth(BOOT),
                          json={"token_name": name})
    else:
        resp = httpx.post(f"{base}/api/v3/configure/token", headers=_auth(BOOT),
                          json={"token_name": name, "permissions": permissions})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["name"] == name and body["token"].startswith("apiv3_")
    return body["token"]


def http_calls(db: str) -> dict[str, tuple[str, str, dict]]:
    return {
        "write_lp": ("POST", "/api/v3/write_lp", {"params": {"db": db}, "content": b"m v=1"}),
        "write_v1": ("POST", "/write", {"params": {"db": db}, "content": b"m v=1"}),
        "write_v2": ("POST", "/api/v2/write", {"params": {"bucket": db}, "content": b"m v=1"}),
        "query_sql": ("GET", "/api/v3/query_sql", {"params": {"db": db, "q": "SELECT 1"}}),
        "query_sql_post": ("POST", "/api/v3/query_sql", {"json": {"db": db, "q": "SELECT 1"}}),
        "query_influxql": ("GET", "/api/v3/query_influxql",
                           {"params": {"db": db, "q": "SHOW MEASUREMENTS"}}),
        "query_v1": ("POST", "/query", {"data": {"db": db, "q": "SELECT * FROM m"}}),
        "create_database": ("POST", "/query", {"data": {"q": f"CREATE DATABASE {db}_x"}}),
        "drop_measurement": ("POST", "/query", {"data": {"db": db, "q": "DROP MEASUREMENT nope"}}),
        "configure_db": ("GET", "/api/v3/configure/database", {}),
        "list_tokens": ("GET", "/api/v3/configure/token", {}),
        "metrics": ("GET", "/metrics", {}),
        "health": ("GET", "/health", {}),
        "ready": ("GET", "/ready", {}),
    }


def flight_get(settings: Settings, token: str | None, db: str) -> str:
    client = flight.FlightClient(f"grpc+tcp://{settings.http_host}:{settings.http_port}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())]
                                       if token else [])
    ticket = flight.Ticket(json.dumps({"database": db, "sql_query": "SELECT 1"}).encode())
    try:
        client.do_get(ticket, options).read_all()
        return "ok"
    except flight.FlightUnauthenticatedError:
        return "401"
    except flight.FlightUnauthorizedError:
        return "403"
    except flight.FlightError:
        return "ok"  # a query error past authorization
    finally:
        client.close()


def flight_sql(settings: Settings, token: str | None, db: str) -> str:
    kwargs = {DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": db}
    if token:
        kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    try:
        with flightsql.connect(f"grpc://{settings.http_host}:{settings.http_port}",
                               db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        return "ok"
    except adbc_driver_manager.Error as exc:
        text = str(exc)
        if "Unauthenticated" in text or "UNAUTHENTICATED" in text:
            return "401"
        if "Unauthorized" in text or "PERMISSION_DENIED" in text or "may not read" in text:
            return "403"
        return "ok"


def test_token_matrix(replicas):
    first, second = replicas
    db, other = unique("mx"), unique("mo")
    assert httpx.post(f"{first.http_url}/api/v3/configure/database", headers=_auth(BOOT),
                      json={"db": db}).status_code == 200
    tokens = {
        "none": None, "wrong": "apiv3_wrong", "bootstrap": BOOT,
        "named_admin": make_token(first.http_url, unique("adm"), None),
        "read": make_token(first.http_url, unique("r"), [f"db:{db}:read"]),
        "write": make_token(first.http_url, unique("w"), [f"db:{db}:write"]),
        "read_other": make_token(first.http_url, unique("ro"), [f"db:{other}:read"]),
    }
    everything = set(http_calls(db)) | {"flight", "flight_sql"}
    reads = {"query_sql", "query_sql_post", "query_influxql", "query_v1", "flight", "flight_sql"}
    writes = {"write_lp", "write_v1", "write_v2", "drop_measurement"}
    opened = {"health", "ready"}
    allowed = {"none": opened, "wrong": opened, "bootstrap": everything,
               "named_admin": everything, "read": opened | reads | {"metrics"},
               "write": opened | writes | {"metrics"}, "read_other": opened | {"metrics"}}
    def outcome(kind: str, name: str) -> str:
        token = tokens[kind]
        if name == "flight":
            return flight_get(first, token, db)
        if name == "flight_sql":
            return flight_sql(first, token, db)
        method, path, kwargs = http_calls(db)[name]
        status = httpx.request(method, first.http_url + path, headers=_auth(token), timeout=30,
                               **kwargs).status_code
        return str(status) if status in (401, 403) else "ok"

    cells = [(kind, name) for kind in tokens for name in sorted(everything)]
    with ThreadPoolExecutor(8) as pool:  # independent requests: ask them side by side
        seen = dict(zip(cells, pool.map(lambda cell: outcome(*cell), cells)))
    expected = {(kind, name): "ok" if name in allowed[kind] else
                ("401" if tokens[kind] in (None, "apiv3_wrong") else "403") for kind, name in cells}
    assert seen == expected
    # the body the authorization step read still reaches the route (form and JSON)
    reader = _auth(tokens["read"])
    resp = httpx.post(f"{first.http_url}/query", data={"db": db, "q": "SHOW MEASUREMENTS"},
                      headers=reader)
    assert resp.status_code == 200 and resp.json()["results"][0]["statement_id"] == 0
    assert "error" not in resp.json()["results"][0], resp.text
    resp = httpx.post(f"{first.http_url}/api/v3/query_sql", headers=reader,
                      json={"db": db, "q": "SELECT 1 AS one"})
    assert (resp.status_code, resp.json()) == (200, [{"one": 1}])
    # every way of presenting a token works for a resource token too
    basic = "Basic " + base64.b64encode(f"u:{tokens['read']}".encode()).decode()
    assert httpx.get(f"{first.http_url}/api/v3/query_sql", params={"db": db, "q": "SELECT 1"},
                     headers={"Authorization": basic}).status_code == 200
    assert httpx.get(f"{first.http_url}/query", params={"db": db, "q": "SELECT * FROM m",
                                                        "p": tokens["read"]}).status_code == 200


def test_token_api_and_revocation_on_every_replica(replicas):
    first, second = replicas
    name = unique("rev")
    token = make_token(first.http_url, name, ["*"])
    listed = httpx.get(f"{second.http_url}/api/v3/configure/token", headers=_auth(token)).json()
    mine = [t for t in listed if t["name"] == name]
    assert len(mine) == 1 and "token" not in mine[0] and mine[0]["permissions"] == ["*"]
    assert token not in json.dumps(listed)
    for settings in (first, second):
        assert httpx.get(f"{settings.http_url}/metrics", headers=_auth(token)).status_code == 200
    resp = httpx.delete(f"{second.http_url}/api/v3/configure/token", headers=_auth(BOOT),
                        params={"token_name": name})
    assert resp.status_code == 200, resp.text
    for settings in (first, second):
        wait_for(lambda: httpx.get(f"{settings.http_url}/metrics",
                                   headers=_auth(token)).status_code == 401,
                 timeout=5, what="revoked token refused")
    assert httpx.delete(f"{first.http_url}/api/v3/configure/token", headers=_auth(BOOT),
                        params={"token_name": name}).status_code == 404
    # the operator token: created once, regenerated, never deleted
    admin = httpx.post(f"{first.http_url}/api/v3/configure/token/admin", headers=_auth(BOOT))
    assert admin.status_code == 201 and admin.json()["name"] == "_admin"
    again = httpx.post(f"{first.http_url}/api/v3/configure/token/admin", headers=_auth(BOOT))
    assert again.status_code == 409
    new = httpx.post(f"{first.http_url}/api/v3/configure/token/admin/regenerate",
                     headers=_auth(admin.json()["token"]))
    assert new.status_code == 201 and new.json()["token"] != admin.json()["token"]
    wait_for(lambda: httpx.get(f"{second.http_url}/metrics",
                               headers=_auth(admin.json()["token"])).status_code == 401,
             timeout=5, what="old _admin secret refused")
    assert httpx.get(f"{second.http_url}/metrics",
                     headers=_auth(new.json()["token"])).status_code == 200
    assert httpx.delete(f"{first.http_url}/api/v3/configure/token", headers=_auth(BOOT),
                        params={"token_name": "_admin"}).status_code == 405
    bad = httpx.post(f"{first.http_url}/api/v3/configure/token", headers=_auth(BOOT),
                     json={"token_name": unique("b"), "permissions": ["db:x:delete"]})
    assert bad.status_code == 400 and "invalid permission" in bad.text


def test_a_read_only_token_cannot_write_anywhere(replicas):
    """Every write entry point refuses it; Flight and Flight SQL have no write path at all."""
    first, _ = replicas
    db = unique("ro")
    token = make_token(first.http_url, unique("rot"), [f"db:{db}:read"])
    for path, params in (("/api/v3/write_lp", {"db": db}), ("/write", {"db": db}),
                         ("/api/v2/write", {"bucket": db}), ("/write", {"db": db, "rp": "x"})):
        resp = httpx.post(first.http_url + path, params=params, content=b"m v=1",
                          headers=_auth(token))
        assert resp.status_code == 403, (path, resp.status_code)
    kwargs = {DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": db,
              DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
    with flightsql.connect(f"grpc://{first.http_host}:{first.http_port}", db_kwargs=kwargs) as conn, \
            conn.cursor() as cur:
        cur.adbc_statement.set_sql_query("INSERT INTO m VALUES (1)")
        with pytest.raises(adbc_driver_manager.Error, match="read-only"):
            cur.adbc_statement.execute_update()
    assert asyncio.run(_tables(first, db)) == []


async def _tables(settings: Settings, db: str) -> list[bytes]:
    client = aioredis.from_url(settings.redis_url)
    try:
        return sorted(await client.smembers(f"{settings.app_id}:db:{db}:tables"))
    finally:
        await client.aclose()


def test_cli_tokens_and_system_tokens(replicas):
    import subprocess
    import sys

    from tests.harness import ROOT, cli_env

    first, _ = replicas
    db, name = unique("st"), unique("cli")
    assert httpx.post(f"{first.http_url}/api/v3/configure/database", headers=_auth(BOOT),
                      json={"db": db}).status_code == 200

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "influent.cli", "token", *args], cwd=ROOT,
                              env=cli_env(first), capture_output=True, text=True, timeout=60)

    made = cli("create", "--name", name, "--permission", f"db:{db}:read")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("apiv3_") and "not shown again" in made.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert [t["permissions"] for t in listed if t["name"] == name] == [[f"db:{db}:read"]]
    assert secret not in cli("list").stdout and name in cli("list").stdout

    q = {"db": db, "q": "SELECT name, permissions FROM system.tokens ORDER BY name"}
    rows = httpx.get(f"{first.http_url}/api/v3/query_sql", params=q, headers=_auth(BOOT)).json()
    assert {"name": name, "permissions": f"db:{db}:read"} in rows
    everything = httpx.get(f"{first.http_url}/api/v3/query_sql", headers=_auth(BOOT), params={
        "db": db, "q": "SELECT * FROM system.tokens"}).text
    assert secret not in everything and "apiv3_" not in everything
    assert httpx.get(f"{first.http_url}/api/v3/query_sql", params=q,
                     headers=_auth(secret)).status_code == 403
    client = flight.FlightClient(f"grpc+tcp://{first.http_host}:{first.http_port}")
    try:
        ticket = flight.Ticket(json.dumps({"database": db, "sql_query": q["q"]}).encode())
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {secret}".encode())])
        with pytest.raises(flight.FlightUnauthorizedError):
            client.do_get(ticket, options).read_all()
    finally:
        client.close()

    assert cli("delete", "--name", name).returncode == 0
    gone = cli("delete", "--name", name)
    assert gone.returncode == 1 and "404" in gone.stderr
