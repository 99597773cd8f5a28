"""Plugin files uploaded through the API or CLI, kept in the catalog (Redis) so every worker
and API replica runs the same code; the plugin directory stays the local default.

Key: ``<ns>:plugin_files`` — hash plugin name (a relative ``.py`` path) -> source text.
"""
from __future__ import annotations

import re

import redis.asyncio as aioredis

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*\.py$")
MAX_PLUGIN_BYTES = 1024 * 1024


def plugin_name_problem(name: str) -> str | None:
    """Why a plugin file name is not acceptable, or None (pure)."""
    if not _NAME.match(name or "") or ".." in name.split("/") or "//" in name:
        return (f"invalid plugin name {name!r}: a relative path of letters, digits, '_', '-', "
                f"'.', '/' ending in .py")
    return None


def k_plugin_files(namespace: str) -> str:
    return f"{namespace}:plugin_files"


class PluginFiles:
    """Uploaded plugin sources of one namespace (async, for the API)."""

    def __init__(self, redis: aioredis.Redis, namespace: str):
        self.redis = redis
        self.key = k_plugin_files(namespace)

    async def put(self, name: str, content: str) -> bool:
        """Store a plugin; True when it is new, False when it replaced one."""
        problem = plugin_name_problem(name)
        if problem:
            raise ValueError(problem)
        if len(content.encode()) > MAX_PLUGIN_BYTES:
            raise ValueError(f"plugin {name} is larger than {MAX_PLUGIN_BYTES} bytes")
        compile(content, name, "exec")  # a syntax error is refused now, not at the first call
        return bool(await self.redis.hset(self.key, name, content.encode()))

    async def get(self, name: str) -> str | None:
        raw = await self.redis.hget(self.key, name)
        return raw.decode() if raw is not None else None

    async def names(self) -> list[str]:
        return sorted(k.decode() for k in await self.redis.hkeys(self.key))

    async def delete(self, name: str) -> bool:
        return bool(await self.redis.hdel(self.key, name))
