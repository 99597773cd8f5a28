"""Last Value Cache and Distinct Value Cache definitions (InfluxDB 3's ``last_cache`` and
``distinct_cache``) in the catalog, so every query API replica serves the same caches and they
survive restarts (the cached values themselves live in each API process: query_api/value_caches.py).

- ``<ns>:last_caches``      hash ``db \\x1f table \\x1f name`` -> JSON of a :class:`LastCacheDef`
- ``<ns>:distinct_caches``  hash ``db \\x1f table \\x1f name`` -> JSON of a :class:`DistinctCacheDef`
- ``<ns>:caches_version``   counter raised by every change, polled by the API processes

The request checks (:func:`last_cache_from_request`, :func:`distinct_cache_from_request`) are
pure and answer with InfluxDB 3's status codes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson
import redis.asyncio as aioredis

from influent.model import TAG, TIME
from persist.catalog import TableSchema

SEP = "\x1f"
DEFAULT_LAST_COUNT = 1
MAX_LAST_COUNT = 10
DEFAULT_TTL_S = 4 * 3600
DEFAULT_MAX_CARDINALITY = 100_000
DEFAULT_MAX_AGE_S = 86_400
#: column kinds a last cache may key on (InfluxDB 3: string, integer, unsigned, boolean)
KEY_KINDS = (TAG, "string", "integer", "uinteger", "boolean")


class CacheRequestError(ValueError):
    """A refused create/delete request, with the HTTP status InfluxDB 3 answers."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LastCacheDef:
    db: str
    table: str
    name: str
    key_columns: tuple[str, ...]
    value_columns: tuple[str, ...] | None  # None: every non-key column, as the table grows
    count: int = DEFAULT_LAST_COUNT
    ttl: int = DEFAULT_TTL_S  # seconds

    def to_json(self) -> dict:
        return {"table": self.table, "name": self.name, "key_columns": list(self.key_columns),
                "value_columns": None if self.value_columns is None else list(self.value_columns),
                "count": self.count, "ttl": self.ttl}

    @classmethod
    def from_stored(cls, raw: bytes | str) -> "LastCacheDef":
        d = orjson.loads(raw)
        values = d["value_columns"]
        return cls(d["db"], d["table"], d["name"], tuple(d["key_columns"]),
                   None if values is None else tuple(values), d["count"], d["ttl"])


@dataclass(frozen=True)
class DistinctCacheDef:
    db: str
    table: str
    name: str
    columns: tuple[str, ...]
    max_cardinality: int = DEFAULT_MAX_CARDINALITY
    max_age: int = DEFAULT_MAX_AGE_S  # seconds

    def to_json(self) -> dict:
        return {"table": self.table, "name": self.name, "columns": list(self.columns),
                "max_cardinality": self.max_cardinality, "max_age": self.max_age}

    @classmethod
    def from_stored(cls, raw: bytes | str) -> "DistinctCacheDef":
        d = orjson.loads(raw)
        return cls(d["db"], d["table"], d["name"], tuple(d["columns"]), d["max_cardinality"],
                   d["max_age"])


CacheDef = LastCacheDef | DistinctCacheDef


def _names(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CacheRequestError(400, f"{what} must be a list of column names")
    return tuple(value)


def _positive_int(body: dict, key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CacheRequestError(400, f"{key} must be a positive integer")
    return value


def _target(body: dict) -> tuple[str, str]:
    db, table = body.get("db"), body.get("table")
    if not isinstance(db, str) or not db:
        raise CacheRequestError(400, "db is required")
    if not isinstance(table, str) or not table:
        raise CacheRequestError(400, "table is required")
    return db, table


def last_cache_from_request(body: dict, schema: TableSchema) -> LastCacheDef:
    """The definition a create request asks for, checked against the table's columns
    (``schema`` is None when the table does not exist: 404)."""
    db, table = _target(body)
    kinds = schema.columns
    keys = _names(body.get("key_columns"), "key_columns")
    if keys is None:
        keys = tuple(schema.tags)  # the series key
    for k in keys:
        if k not in kinds:
            raise CacheRequestError(400, f"key column not found: {k}")
        if kinds[k] not in KEY_KINDS:
            raise CacheRequestError(400, f"invalid key column type for {k}: {kinds[k]}")
    values = _names(body.get("value_columns"), "value_columns")
    for v in values or ():
        if v not in kinds:
            raise CacheRequestError(400, f"value column not found: {v}")
    if values is not None:
        values = tuple(v for v in values if v != TIME) + (TIME,)
    count = _positive_int(body, "count", DEFAULT_LAST_COUNT)
    if count > MAX_LAST_COUNT:
        raise CacheRequestError(400, f"count must be between 1 and {MAX_LAST_COUNT}")
    ttl = _positive_int(body, "ttl", DEFAULT_TTL_S)
    name = body.get("name") or "_".join((table, *keys, "last_cache"))
    return LastCacheDef(db, table, str(name), keys, values, count, ttl)


def distinct_cache_from_request(body: dict, schema: TableSchema) -> DistinctCacheDef:
    db, table = _target(body)
    columns = _names(body.get("columns"), "columns")
    if not columns:
        raise CacheRequestError(400, "columns must name at least one column")
    for c in columns:
        kind = schema.columns.get(c)
        if kind is None:
            raise CacheRequestError(400, f"column not found: {c}")
        if kind not in (TAG, "string"):
            raise CacheRequestError(400, f"invalid column type for {c}: {kind} "
                                         "(only tags and string fields)")
    max_cardinality = _positive_int(body, "max_cardinality", DEFAULT_MAX_CARDINALITY)
    max_age = _positive_int(body, "max_age", DEFAULT_MAX_AGE_S)
    name = body.get("name") or "_".join((table, *columns, "distinct_cache"))
    return DistinctCacheDef(db, table, str(name), columns, max_cardinality, max_age)


class CacheCatalog:
    """Async access to the cache definitions of one namespace."""

    KINDS = {"last": LastCacheDef, "distinct": DistinctCacheDef}

    def __init__(self, client: aioredis.Redis, namespace: str):
        self.redis = client
        self.ns = namespace
        self.version_key = f"{namespace}:caches_version"

    def key(self, kind: str) -> str:
        return f"{self.ns}:{kind}_caches"

    @staticmethod
    def kind_of(definition: CacheDef) -> str:
        return "last" if isinstance(definition, LastCacheDef) else "distinct"

    async def create(self, definition: CacheDef) -> bool:
        """False when the table already has a cache of that kind and name (409)."""
        kind = self.kind_of(definition)
        field = SEP.join((definition.db, definition.table, definition.name))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key(kind), field, orjson.dumps(asdict(definition)))
            pipe.incr(self.version_key)
            added, _ = await pipe.execute()
        return bool(added)

    async def drop(self, kind: str, db: str, table: str, name: str) -> bool:
        """False when there was no such cache (404)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key(kind), SEP.join((db, table, name)))
            pipe.incr(self.version_key)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def drop_table(self, db: str, table: str | None = None) -> None:
        """Forget the caches of a deleted table (every table of ``db`` when None)."""
        for kind in self.KINDS:
            prefix = f"{db}{SEP}" if table is None else f"{db}{SEP}{table}{SEP}"
            gone = [f for f in await self.redis.hkeys(self.key(kind))
                    if f.decode().startswith(prefix)]
            if gone:
                await self.redis.hdel(self.key(kind), *gone)
        await self.redis.incr(self.version_key)

    async def version(self) -> int:
        return int(await self.redis.get(self.version_key) or 0)

    async def all(self, db: str | None = None) -> list[CacheDef]:
        """Every definition (of ``db`` only when given), last caches first, by table and name."""
        found: list[CacheDef] = []
        for kind, cls in self.KINDS.items():
            defs = [cls.from_stored(v) for v in (await self.redis.hgetall(self.key(kind))).values()]
            found.extend(sorted((d for d in defs if db is None or d.db == db),
                                key=lambda d: (d.table, d.name)))
        return found
