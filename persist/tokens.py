"""API tokens in the catalog: stored as SHA-512 hashes (the secret is shown once, at creation),
each with its permissions.

Permissions are InfluxDB 3's resource-token strings: ``*`` (everything: an admin token),
``db:NAME[,NAME...]:read[,write]`` (``NAME`` may be ``*`` for every database). Admin tokens
(``_admin`` and named admin tokens) hold ``*``.

Keys (``<ns>`` as in :mod:`persist.catalog`):

- ``<ns>:tokens``          hash token name -> record JSON (no secret)
- ``<ns>:token_hashes``    hash SHA-512 hex of the secret -> token name
- ``<ns>:tokens_version``  counter raised on every change, so API replicas drop cached lookups
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import redis.asyncio as aioredis

ADMIN_NAME = "_admin"
ALL = "*"
READ, WRITE = "read", "write"
_PERMISSION = re.compile(r"^db:([^:]+):([a-z,]+)$")


class TokenError(ValueError):
    """A bad token request; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def new_secret() -> str:
    """A token secret in InfluxDB 3's format: ``apiv3_`` + base64 of 64 random bytes."""
    return "apiv3_" + base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")


def hash_secret(secret: str) -> str:
    return hashlib.sha512(secret.encode()).hexdigest()


def parse_permissions(raw) -> tuple[str, ...]:
    """Permission strings from a request: a list of strings, or InfluxDB 3 Enterprise's
    ``[{"resource_type": "db", "resource_names": [...], "actions": [...]}]``; TokenError 400."""
    if not isinstance(raw, list) or not raw:
        raise TokenError(400, "'permissions' must be a non-empty list")
    out: list[str] = []
    for item in raw:
        if isinstance(item, dict):
            names = item.get("resource_names") or item.get("resource_identifier") or []
            if item.get("resource_type") != "db" or not names or not item.get("actions"):
                raise TokenError(400, f"invalid permission {item!r}: expected resource_type "
                                      f"'db', resource_names and actions")
            item = f"db:{','.join(names)}:{','.join(item['actions'])}"
        if not isinstance(item, str):
            raise TokenError(400, f"invalid permission {item!r}")
        if item == ALL:
            out.append(ALL)
            continue
        match = _PERMISSION.match(item)
        actions = set(match.group(2).split(",")) if match else set()
        if not match or not actions or not actions <= {READ, WRITE}:
            raise TokenError(400, f"invalid permission {item!r}: expected '*' or "
                                  f"'db:NAME[,NAME]:read[,write]'")
        out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and permissions."""

    name: str
    permissions: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return ALL in self.permissions

    def allows(self, action: str, db: str) -> bool:
        """May this token ``read`` or ``write`` database ``db``? (write does not imply read)"""
        if self.is_admin:
            return True
        for perm in self.permissions:
            match = _PERMISSION.match(perm)
            if match and action in match.group(2).split(",") and (
                    db in match.group(1).split(",") or ALL in match.group(1).split(",")):
                return True
        return False


@dataclass
class TokenRecord:
    id: str
    name: str
    hash: str
    permissions: list[str]
    created_at: str
    expiry: str | None = None             # RFC 3339, or None for never
    expiry_ms: int | None = None
    description: str | None = field(default=None)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "TokenRecord":
        return cls(**json.loads(raw))

    def expired(self, now_ms: int) -> bool:
        return self.expiry_ms is not None and now_ms >= self.expiry_ms

    def public(self) -> dict:
        """The record as the API shows it after creation (no secret)."""
        return {"id": self.id, "name": self.name, "hash": self.hash,
                "permissions": self.permissions, "created_at": self.created_at,
                "expiry": self.expiry, "description": self.description}


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class TokenStore:
    """The tokens of one namespace in Redis."""

    def __init__(self, redis: aioredis.Redis, namespace: str):
        self.redis = redis
        self.ns = namespace

    def k_tokens(self) -> str:
        return f"{self.ns}:tokens"

    def k_hashes(self) -> str:
        return f"{self.ns}:token_hashes"

    def k_version(self) -> str:
        return f"{self.ns}:tokens_version"

    async def version(self) -> int:
        raw = await self.redis.get(self.k_version())
        return int(raw) if raw is not None else 0

    async def any(self) -> bool:
        return bool(await self.redis.hlen(self.k_tokens()))

    async def list(self) -> list[TokenRecord]:
        raw = await self.redis.hgetall(self.k_tokens())
        return sorted((TokenRecord.from_json(v) for v in raw.values()), key=lambda r: r.name)

    async def get(self, name: str) -> TokenRecord | None:
        raw = await self.redis.hget(self.k_tokens(), name)
        return TokenRecord.from_json(raw) if raw is not None else None

    async def create(self, name: str, permissions: tuple[str, ...], expiry_secs: int | None = None,
                     description: str | None = None) -> tuple[TokenRecord, str]:
        """A new token (TokenError 409 when the name is taken); returns it and its secret."""
        if not name or any(c in name for c in "\n\r\x1f"):
            raise TokenError(400, f"invalid token name {name!r}")
        secret = new_secret()
        now_ms = int(time.time() * 1000)
        expiry_ms = now_ms + int(expiry_secs) * 1000 if expiry_secs else None
        record = TokenRecord(id=str(uuid.uuid4()), name=name, hash=hash_secret(secret),
                             permissions=list(permissions), created_at=_rfc3339(now_ms),
                             expiry=_rfc3339(expiry_ms) if expiry_ms else None,
                             expiry_ms=expiry_ms, description=description)
        if not await self.redis.hsetnx(self.k_tokens(), name, record.to_json()):
            raise TokenError(409, f"token {name} already exists")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.k_hashes(), record.hash, name)
            pipe.incr(self.k_version())
            await pipe.execute()
        return record, secret

    async def regenerate(self, name: str) -> tuple[TokenRecord, str]:
        """A new secret for an existing token; the old one stops working (TokenError 404)."""
        record = await self.get(name)
        if record is None:
            raise TokenError(404, f"token {name} not found")
        secret = new_secret()
        old_hash, record.hash = record.hash, hash_secret(secret)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.k_hashes(), old_hash)
            pipe.hset(self.k_hashes(), record.hash, name)
            pipe.hset(self.k_tokens(), name, record.to_json())
            pipe.incr(self.k_version())
            await pipe.execute()
        return record, secret

    async def delete(self, name: str) -> None:
        record = await self.get(name)
        if record is None:
            raise TokenError(404, f"token {name} not found")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.k_hashes(), record.hash)
            pipe.hdel(self.k_tokens(), name)
            pipe.incr(self.k_version())
            await pipe.execute()

    async def resolve(self, secret: str) -> Principal | None:
        """The principal of a presented secret, or None (unknown, revoked or expired)."""
        digest = hash_secret(secret)
        name = await self.redis.hget(self.k_hashes(), digest)
        if name is None:
            return None
        record = await self.get(name.decode())
        if record is None or record.hash != digest or record.expired(int(time.time() * 1000)):
            return None
        return Principal(record.name, tuple(record.permissions))


def tokens_table(records: list[TokenRecord]) -> pa.Table:
    """``system.tokens``: one row per token, without its secret or hash."""
    return pa.table({
        "token_id": pa.array([r.id for r in records], pa.string()),
        "name": pa.array([r.name for r in records], pa.string()),
        "permissions": pa.array([",".join(r.permissions) for r in records], pa.string()),
        "created_at": pa.array([r.created_at for r in records], pa.string()),
        "expiry": pa.array([r.expiry for r in records], pa.string()),
        "description": pa.array([r.description for r in records], pa.string()),
    })
