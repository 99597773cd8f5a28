"""``influxdb3_local``: the object every plugin function receives first, with InfluxDB 3's
methods (logging, writes, queries, the cache).

It is used from the plugin's thread, so everything it reaches is synchronous: the Redis client
of :class:`~persist.engine_catalog.PluginStore` for logs and the cache, and the ``write_now`` /
``query`` callables the process provides (they hop onto the event loop or over HTTP).
Buffered writes (``write``, ``write_to_db``) are only collected here; the runtime produces them
once the call has returned successfully, so a failed call writes nothing buffered.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persist.admission import database_name_error
from persist.engine_catalog import PluginStore

log = logging.getLogger("influent.plugins")

#: (database, lines) -> None, returns once the lines are on the writes topic.
WriteNow = Callable[[str, list[str]], None]
#: (database, sql, params) -> rows.
QueryRows = Callable[[str, str, "dict[str, Any] | None"], "list[dict[str, Any]]"]


class QueryError(Exception):
    """A query from a plugin failed (bad SQL, unknown database or table, API unreachable)."""


@dataclass(frozen=True)
class CallContext:
    database: str
    trigger: str
    store: PluginStore
    write_now: WriteNow
    query: QueryRows


def line_text(line: Any) -> str:
    """A LineBuilder (anything with ``build()``) or a line protocol string."""
    if hasattr(line, "build"):
        return line.build()
    if isinstance(line, str):
        return line
    raise TypeError(f"expected a LineBuilder, got {type(line).__name__}")


class PluginCache:
    """``influxdb3_local.cache``: values kept in Redis, so they survive restarts and are seen by
    every worker; per trigger unless ``use_global`` is true."""

    def __init__(self, store: PluginStore, trigger_scope: str):
        self._store = store
        self._scope = trigger_scope

    def _scope_for(self, use_global: bool | None) -> str:
        return "global" if use_global else self._scope

    def put(self, key: str, value: Any, ttl: float | None = None, use_global: bool | None = None) -> None:
        self._store.cache_put(self._scope_for(use_global), str(key), value, ttl)

    def get(self, key: str, default: Any = None, use_global: bool | None = None) -> Any:
        return self._store.cache_get(self._scope_for(use_global), str(key), default)

    def delete(self, key: str, use_global: bool | None = None) -> bool:
        return self._store.cache_delete(self._scope_for(use_global), str(key))


class PluginApi:
    """The ``influxdb3_local`` of one plugin call."""

    def __init__(self, ctx: CallContext):
        self._ctx = ctx
        self.buffered: list[tuple[str, str]] = []  # (database, line), produced after the call
        self._cache = PluginCache(ctx.store, f"trigger:{ctx.database}:{ctx.trigger}")

    # ---- logging ------------------------------------------------------------------------
    def _log(self, level: str, args: tuple[Any, ...]) -> None:
        text = " ".join(str(a) for a in args)
        log.log({"INFO": logging.INFO, "WARN": logging.WARNING}.get(level, logging.ERROR),
                "[%s/%s] %s", self._ctx.database, self._ctx.trigger, text)
        self._ctx.store.log(self._ctx.database, self._ctx.trigger, level, text)

    def info(self, *args: Any) -> None:
        self._log("INFO", args)

    def warn(self, *args: Any) -> None:
        self._log("WARN", args)

    def error(self, *args: Any) -> None:
        self._log("ERROR", args)

    # ---- writes -------------------------------------------------------------------------
    @staticmethod
    def _checked_db(db: str) -> str:
        reason = database_name_error(db)
        if reason:
            raise ValueError(reason)
        return db

    def write(self, line: Any) -> None:
        self.buffered.append((self._ctx.database, line_text(line)))

    def write_to_db(self, db_name: str, line: Any) -> None:
        self.buffered.append((self._checked_db(db_name), line_text(line)))

    def write_sync(self, line: Any, no_sync: bool = False) -> None:
        self._ctx.write_now(self._ctx.database, [line_text(line)])

    def write_sync_to_db(self, db_name: str, line: Any, no_sync: bool = False) -> None:
        self._ctx.write_now(self._checked_db(db_name), [line_text(line)])

    # ---- queries and cache --------------------------------------------------------------
    def query(self, query: str, args: dict[str, Any] | None = None,
              database: str | None = None) -> list[dict[str, Any]]:
        return self._ctx.query(database or self._ctx.database, query, args)

    @property
    def cache(self) -> PluginCache:
        return self._cache
