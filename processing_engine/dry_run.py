"""Plugin dry runs for ``/api/v3/plugin_test/wal`` and ``/schedule``: call a plugin once with
the given input and report what it logged and what it would have written — nothing is written,
logged to ``system.processing_engine_logs`` or cached beyond the call.

Answers have InfluxDB 3's shape: ``{"log_lines": ["INFO: ..."], "database_writes": {db:
[line, ...]}, "errors": [...]}`` (plus ``trigger_time`` for a schedule). Each written line is
checked as the write path would check it; a bad line is reported in ``errors``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from processing_engine.line_builder import PLUGIN_GLOBALS
from processing_engine.local_api import CallContext, PluginApi, QueryRows
from processing_engine.plugins import call_in_thread
from processing_engine.rows import table_batches
from processing_engine.specs import SCHEDULE, SpecError, parse_spec
from topics.line_protocol import parse_lp


class MemoryStore:
    """Stands where :class:`persist.engine_catalog.PluginStore` does during a dry run: logs go
    to a list and the cache lives for the call only."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cache: dict[tuple[str, str], tuple[Any, float | None]] = {}

    def log(self, db: str, trigger: str, level: str, text: str) -> None:
        self.lines.append(f"{level}: {text}")

    def cache_put(self, scope: str, key: str, value: Any, ttl: float | None) -> None:
        expires = time.monotonic() + ttl if ttl else None
        self._cache[(scope, key)] = (value, expires)

    def cache_get(self, scope: str, key: str, default: Any = None) -> Any:
        value, expires = self._cache.get((scope, key), (default, None))
        if expires is not None and time.monotonic() >= expires:
            return default
        return value

    def cache_delete(self, scope: str, key: str) -> bool:
        return self._cache.pop((scope, key), None) is not None


@dataclass
class DryRun:
    """The outcome of one dry run, in InfluxDB 3's answer shape (:meth:`to_json`)."""

    log_lines: list[str] = field(default_factory=list)
    database_writes: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    trigger_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log_lines": self.log_lines, "database_writes": self.database_writes,
                               "errors": self.errors}
        if self.trigger_time is not None:
            out["trigger_time"] = self.trigger_time
        return out


def plugin_namespace(source: str, filename: str) -> dict[str, Any]:
    """Execute a plugin's source in fresh globals (with LineBuilder), as the runtime does."""
    namespace: dict[str, Any] = {"__name__": "influent_plugin_test", "__file__": filename,
                                 **PLUGIN_GLOBALS}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the operator's plugin
    return namespace


def input_batches(input_lp: str, now_ns: int) -> tuple[list[dict[str, Any]], list[str]]:
    """``table_batches`` of the test's line protocol (nanosecond timestamps), and its bad
    lines as errors."""
    result = parse_lp(input_lp.encode(), precision="ns", default_time=now_ns)
    errors = [f"line {e.line}: {e.reason}" for e in result.errors]
    batches = table_batches([(t.name, t.batch) for t in result.tables.values()])
    return batches, errors


def schedule_time(schedule: str | None, now: datetime) -> datetime:
    """The instant a scheduled test call stands for: the schedule's next instant after ``now``
    (``every:``/``cron:`` or a bare cron expression), else ``now``. Raises SpecError."""
    if not schedule:
        return now
    text = schedule if ":" in schedule else f"cron:{schedule}"
    spec = parse_spec(text)
    if spec.kind != SCHEDULE:
        raise SpecError(f"not a schedule: {schedule!r}")
    return spec.next_fire(now) or now


async def dry_run(source: str, filename: str, database: str, function: str,
                  make_args: Callable[[PluginApi], tuple], query: QueryRows,
                  timeout: float = 60.0) -> DryRun:
    """Call ``function`` of the plugin once; collect logs and writes, never write them."""
    store = MemoryStore()
    outcome = DryRun(log_lines=store.lines)
    writes: list[tuple[str, str]] = []

    def write_now(db: str, lines: list[str]) -> None:
        writes.extend((db, line) for line in lines)

    api = PluginApi(CallContext(database, "plugin_test", store, write_now, query))

    def run() -> Any:
        fn = plugin_namespace(source, filename).get(function)
        if not callable(fn):
            raise AttributeError(f"plugin {filename} has no function {function}()")
        return fn(*make_args(api))

    try:
        await call_in_thread(run, timeout)
    except Exception as exc:  # noqa: BLE001 - the plugin may raise anything: report it
        outcome.errors.append(f"{type(exc).__name__}: {exc}")
    for db, line in writes + api.buffered:
        checked = parse_lp(line.encode(), precision="ns", default_time=time.time_ns())
        if checked.errors:
            outcome.errors.append(f"invalid line written to {db}: {checked.errors[0].reason}: {line}")
            continue
        outcome.database_writes.setdefault(db, []).append(line)
    return outcome


def call_time_of(instant: datetime) -> datetime:
    """The ``call_time`` a scheduled plugin receives: naive local time, as InfluxDB 3 passes."""
    return datetime.fromtimestamp(instant.timestamp())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
