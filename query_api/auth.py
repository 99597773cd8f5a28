"""Who may call what: token lookup (cached briefly per process) and the permission each HTTP
request needs.

Authentication is on when ``INFLUENT_TOKEN`` is set (the bootstrap admin token) or the catalog
holds any token (so on an open server, the first ``POST /api/v3/configure/token/admin`` needs
none, as in InfluxDB 3, and turns authentication on). Then every endpoint but ``/health``,
``/ping``, ``/ready`` and the explorer page's files needs a valid token (401 otherwise), and
the token must allow the request (403 otherwise):

| request | needs |
| --- | --- |
| writes (``/api/v3/write_lp``, ``/write``, ``/api/v2/write``) | ``db:<db>:write`` |
| ``/api/v3/query_sql``, Flight ``DoGet``, Flight SQL | ``db:<db>:read`` (``*`` to read ``system.tokens``) |
| InfluxQL (``/query``, ``/api/v3/query_influxql``) | per statement: SELECT/SHOW ``read`` on its database, ``DROP MEASUREMENT`` ``write``, ``CREATE/DROP DATABASE`` and subscriptions ``*``, ``SHOW DATABASES`` any token |
| ``/metrics``, ``/api/v3/explorer/pipeline`` | any token |
| everything else (``/api/v3/configure/*``, ``/api/v3/engine/*``, ``/api/v3/plugin_test/*``) | ``*`` |

Lookups are cached for :data:`CACHE_SECONDS` and dropped as soon as this process sees the
catalog's token version move, so a revoked token is refused by every replica within a second.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import time
from dataclasses import dataclass
from typing import Any

from persist.tokens import ALL, READ, WRITE, Principal, TokenStore
from query_api.explorer import PUBLIC_PATHS as EXPLORER_FILES
from query_api.influxql import ast, management
from query_api.influxql.parser import ParseError, parse_query

CACHE_SECONDS = 0.5
BOOTSTRAP = Principal("INFLUENT_TOKEN", (ALL,))
OPEN_PATHS = frozenset({"/health", "/api/v1/health", "/ping", "/ready"}) | EXPLORER_FILES


@dataclass(frozen=True)
class Need:
    """One permission a request needs: ``kind`` is open, any, admin, read or write."""

    kind: str
    db: str | None = None


OPEN, ANY, ADMIN = Need("open"), Need("any"), Need("admin")


def credentials(headers: Any, params: Any) -> str | None:
    """The token a request presents: ``Authorization: Bearer|Token <t>``, Basic (password
    part), or the v1 ``p`` parameter."""
    header = headers.get("authorization", "") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().split(":", 1)[-1] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return params.get("p") or None


def _target(db: str | None, rp: str | None) -> str | None:
    if db and rp and rp not in ("autogen", "default"):
        return f"{db}/{rp}"
    return db


def influxql_needs(query: str, db: str | None, rp: str | None = None) -> list[Need]:
    """What each statement of an InfluxQL query needs (pure); a query that does not parse
    needs any token (the endpoint then reports the syntax error)."""
    try:
        statements = parse_query(query).statements
    except ParseError:
        return [ANY]
    except Exception:  # unbound parameters and the like: the endpoint reports them
        return [ANY]
    needs: list[Need] = []
    for stmt in statements:
        if isinstance(stmt, (management.CreateDatabase, management.DropDatabase,
                             ast.CreateSubscription, ast.DropSubscription, ast.ShowSubscriptions)):
            needs.append(ADMIN)
        elif isinstance(stmt, management.DropMeasurement):
            needs.append(Need(WRITE, _target(db, rp)) if db else ANY)
        elif isinstance(stmt, ast.SelectStatement):
            names = {_target(m.database, m.retention_policy or rp) if m.database else
                     _target(db, m.retention_policy or rp) for m in stmt.sources}
            needs.extend(Need(READ, n) if n else ANY for n in sorted(names, key=str))
        elif isinstance(stmt, (ast.ShowDatabases, ast.UnsupportedStatement)):
            needs.append(ANY)
        else:
            name = getattr(stmt, "database", None) or _target(db, rp)
            needs.append(Need(READ, name) if name else ANY)
    return needs or [ANY]


def request_needs(method: str, path: str, args: dict[str, Any]) -> list[Need]:
    """The permissions an HTTP request needs (pure); ``args`` are its query parameters merged
    with its JSON or form body's top-level values."""
    if method == "OPTIONS" or path in OPEN_PATHS:
        return [OPEN]
    if path in ("/metrics", "/api/v3/explorer/pipeline"):
        return [ANY]
    if path in ("/api/v3/write_lp", "/write"):
        db = _target(args.get("db"), args.get("rp") if path == "/write" else None)
        return [Need(WRITE, db)] if db else [ANY]
    if path == "/api/v2/write":
        return [Need(WRITE, args.get("bucket"))] if args.get("bucket") else [ANY]
    if path == "/api/v3/query_sql":
        if reads_admin_tables(args.get("q")):
            return [ADMIN]
        return [Need(READ, args.get("db"))] if args.get("db") else [ANY]
    if path in ("/query", "/api/v3/query_influxql"):
        q = args.get("q")
        if not isinstance(q, str) or not q:
            return [ANY]
        return influxql_needs(q, args.get("db"), args.get("rp") if path == "/query" else None)
    return [ADMIN]


def reads_admin_tables(sql: Any) -> bool:
    """Does a SQL text name ``system.tokens`` (names and permissions of every token: admin
    only)? A cheap superset test, as the engine's own for system tables."""
    return isinstance(sql, str) and "system.tokens" in sql.lower()


def denied(principal: Principal, needs: list[Need]) -> bool:
    """True when the principal lacks any of the needed permissions (pure)."""
    for need in needs:
        if need.kind == ADMIN.kind and not principal.is_admin:
            return True
        if need.kind in (READ, WRITE) and not principal.allows(need.kind, need.db or ""):
            return True
    return False


class TokenAuthority:
    """Resolves presented tokens for one API process: the bootstrap token, then the catalog's
    tokens, each lookup cached for :data:`CACHE_SECONDS` (and until the token version moves)."""

    def __init__(self, store: TokenStore, bootstrap: str = ""):
        self.store = store
        self.bootstrap = bootstrap
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._checked = 0.0
        self._version = -1
        self._any = False
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < CACHE_SECONDS:
            return
        async with self._lock:
            if time.monotonic() - self._checked < CACHE_SECONDS:
                return
            version = await self.store.version()
            if version != self._version:
                self._cache.clear()
                self._any = await self.store.any()
                self._version = version
            self._checked = time.monotonic()

    async def enabled(self) -> bool:
        if self.bootstrap:
            return True
        await self._refresh()
        return self._any

    async def authenticate(self, secret: str | None) -> Principal | None:
        if not secret:
            return None
        if self.bootstrap and hmac.compare_digest(secret.encode(), self.bootstrap.encode()):
            return BOOTSTRAP
        await self._refresh()
        now = time.monotonic()
        cached = self._cache.get(secret)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self.store.resolve(secret)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[secret] = (now + CACHE_SECONDS, principal)
        return principal

    def forget(self) -> None:
        """Drop every cached lookup (after a change made by this process)."""
        self._cache.clear()
        self._checked = 0.0
