"""Resume points of a migration, kept in Redis beside the catalog.

Hash ``<ns>:migrate:<job>`` (``ns`` = the catalog namespace, i.e. the topic prefix without
its dot), one field per copied window ``<measurement>\\x1f<window start ns>\\x1f<window end
ns>`` whose value is the number of rows copied. A window is recorded only after Kafka
acknowledged all of its rows, so a killed run re-copies at most the windows in flight; the
rows it copies twice are the same keys with the same values, and dedup keeps one. Kept in
Redis, not a local file, so a migration can resume from any machine that reaches the cluster.
"""
from __future__ import annotations

import redis.asyncio as aioredis

SEP = "\x1f"


def window_field(measurement: str, start: int, end: int) -> str:
    return f"{measurement}{SEP}{start}{SEP}{end}"


class Checkpoints:
    def __init__(self, redis_url: str, namespace: str, job: str) -> None:
        self.redis = aioredis.from_url(redis_url)
        self.key = f"{namespace}:migrate:{job}"

    async def close(self) -> None:
        await self.redis.aclose()

    async def done(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def mark(self, copied: dict[str, int]) -> None:
        if copied:
            await self.redis.hset(self.key, mapping={k: str(v) for k, v in copied.items()})

    async def clear(self) -> None:
        await self.redis.delete(self.key)
