"""Continuous queries in the catalog (Redis), shared by the query API (CREATE/DROP/SHOW
CONTINUOUS QUERIES) and the workers (which run them).

- ``<ns>:continuous_queries``  hash ``db \\x1f name`` -> JSON of a :class:`ContinuousQuery`
- every change raises ``<ns>:engine_version`` so running workers pick it up (the processing
  engine's supervisor polls that counter).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson
import redis.asyncio as aioredis

from persist.engine_catalog import SEP, EngineKeys


@dataclass(frozen=True)
class ContinuousQuery:
    database: str
    name: str
    query: str          # the CREATE statement as given (SHOW CONTINUOUS QUERIES prints it)
    source_text: str    # its SELECT without the INTO clause
    into_text: str      # "INTO target"
    interval_ns: int    # GROUP BY time interval
    offset_ns: int      # GROUP BY time offset
    every_ns: int       # how often it runs (RESAMPLE EVERY, default: the interval)
    for_ns: int         # how far back each run reaches (RESAMPLE FOR, default: the interval)
    created_ms: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ContinuousQuery":
        return cls(**orjson.loads(raw))


class ContinuousQueryStore:
    def __init__(self, client: aioredis.Redis, namespace: str):
        self.redis = client
        self.key = f"{namespace}:continuous_queries"
        self.version_key = EngineKeys(namespace).version

    @classmethod
    def connect(cls, redis_url: str, namespace: str) -> "ContinuousQueryStore":
        return cls(aioredis.from_url(redis_url), namespace)

    async def close(self) -> None:
        await self.redis.aclose()

    async def create(self, cq: ContinuousQuery) -> bool:
        """False when the database already has a continuous query of that name."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key, f"{cq.database}{SEP}{cq.name}", cq.to_json())
            pipe.incr(self.version_key)
            added, _ = await pipe.execute()
        return bool(added)

    async def drop(self, db: str, name: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key, f"{db}{SEP}{name}")
            pipe.incr(self.version_key)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def drop_database(self, db: str) -> None:
        for cq in await self.all():
            if cq.database == db:
                await self.drop(db, cq.name)

    async def all(self) -> list[ContinuousQuery]:
        raw = await self.redis.hgetall(self.key)
        return sorted((ContinuousQuery.from_json(v) for v in raw.values()),
                      key=lambda c: (c.database, c.name))


# ---- timing of one run (pure) ------------------------------------------------------------


def run_range(cq: ContinuousQuery, instant_ns: int) -> tuple[int, int]:
    """[start, end) in ns of the windows a run at ``instant_ns`` recomputes."""
    def truncate(t: int) -> int:
        return t - (t - cq.offset_ns) % cq.interval_ns

    return truncate(instant_ns - cq.for_ns), truncate(instant_ns)


def run_statement_text(cq: ContinuousQuery, instant_ns: int) -> str:
    """The ``SELECT ... INTO`` one run executes: the stored SELECT as a subquery bounded by the
    run's range (an outer time range bounds its subquery), its points written unchanged."""
    start, end = run_range(cq, instant_ns)
    return (f"SELECT * {cq.into_text} FROM ({cq.source_text}) "
            f"WHERE time >= {start} AND time < {end} GROUP BY *")
