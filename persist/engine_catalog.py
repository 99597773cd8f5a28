"""The processing engine's part of the catalog in Redis: subscriptions, triggers, the plugin
cache, plugin logs, and the counters and lags the API exports as Prometheus metrics.

Key layout (``<ns>`` as in :mod:`persist.catalog`; ``␟`` is the unit separator \\x1f):

- ``<ns>:subscriptions``          hash ``<db>␟<name>`` -> subscription JSON
- ``<ns>:triggers``               hash ``<db>␟<name>`` -> trigger JSON
- ``<ns>:engine_version``         counter raised by every change of the two hashes above;
                                   workers poll it to pick changes up without a restart
- ``<ns>:plugin_cache:<scope>:<key>``  pickled value (``PX`` = ttl); scope ``global`` or
                                   ``trigger:<db>:<trigger>``
- ``<ns>:plugin_logs``            stream of plugin log lines (capped at ``LOG_CAP`` entries):
                                   ``time`` (ns), ``db``, ``trigger``, ``level``, ``text``
- ``<ns>:engine_stats``           hash ``<metric>␟<db>␟<name>[␟<label>]`` -> count
- ``<ns>:engine_lag``             hash ``<kind>␟<db>␟<name>␟<destination>␟<partition>`` ->
                                   ``<lag>␟<updated unix ms>`` (written by the consumers)
- ``<ns>:trigger_fired:<db>:<name>:<unix s>``  worker id that claimed a scheduled instant
                                   (``SET NX``, expires), so one worker runs each instant

Records are plain dataclasses; validation of names, specs and predicates is the API's job.
"""
from __future__ import annotations

import json
import pickle
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import redis
import redis.asyncio as aioredis

from influent.model import KEY_SEPARATOR as SEP

LOG_CAP = 10_000
KAFKA_SCHEME = "kafka:"
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where a subscription delivers: a Kafka topic (``kafka:<topic>``) or an HTTP URL."""

    kind: str  # "kafka" | "http"
    target: str  # topic name or URL

    @property
    def uri(self) -> str:
        return f"{KAFKA_SCHEME}{self.target}" if self.kind == "kafka" else self.target

    @classmethod
    def parse(cls, raw: str | dict) -> "Destination":
        """From ``{"kind": "kafka", "topic": ...}`` / ``{"kind": "http", "url": ...}`` or a URI
        (``kafka:<topic>``, ``http(s)://...``); ValueError otherwise."""
        if isinstance(raw, dict):
            kind = raw.get("kind")
            if kind == "kafka" and raw.get("topic"):
                return cls.parse(f"{KAFKA_SCHEME}{raw['topic']}")
            if kind == "http" and raw.get("url"):
                return cls.parse(str(raw["url"]))
            raise ValueError('destination must be {"kind": "kafka", "topic": ...} or '
                             '{"kind": "http", "url": ...}')
        text = str(raw).strip()
        if text.startswith(KAFKA_SCHEME):
            topic = text[len(KAFKA_SCHEME):].lstrip("/")
            if not _TOPIC.match(topic):
                raise ValueError(f"invalid Kafka topic {topic!r}: 1 to 249 of letters, digits, "
                                 "'.', '_' and '-'")
            return cls("kafka", topic)
        parts = urlsplit(text)
        if parts.scheme in ("http", "https") and parts.netloc:
            return cls("http", text)
        raise ValueError(f"unsupported destination {text!r}: use http://, https:// or kafka:<topic>")

    def to_api(self) -> dict[str, str]:
        return {"kind": "kafka", "topic": self.target} if self.kind == "kafka" else \
            {"kind": "http", "url": self.target}


@dataclass(frozen=True)
class Subscription:
    """Forward the matching rows of a database's writes, as line protocol, to destinations.

    ``mode`` ALL delivers every write to each destination; ANY to one of them (the next one
    that accepts it), as InfluxDB 1.x subscriptions do."""

    database: str
    name: str
    destinations: tuple[Destination, ...]
    mode: str = "ALL"
    tables: tuple[str, ...] = ()
    predicate: str = ""
    retention_policy: str = "autogen"
    created_ms: int = 0

    def to_json(self) -> str:
        d = asdict(self)
        d["destinations"] = [x.uri for x in self.destinations]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, data: bytes | str) -> "Subscription":
        d = json.loads(data)
        d["destinations"] = tuple(Destination.parse(u) for u in d["destinations"])
        d["tables"] = tuple(d.get("tables") or ())
        return cls(**d)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"db": self.database, "name": self.name, "mode": self.mode,
                               "tables": list(self.tables) or None,
                               "predicate": self.predicate or None,
                               "retention_policy": self.retention_policy,
                               "destinations": [d.to_api() for d in self.destinations]}
        if len(self.destinations) == 1:
            out["destination"] = self.destinations[0].to_api()
        return out


ERROR_BEHAVIORS = ("log", "retry", "disable")


@dataclass(frozen=True)
class TriggerSettings:
    """InfluxDB 3's ``trigger_settings`` plus influent's own (documented in docs/plugins.md)."""

    run_async: bool = False
    error_behavior: str = "log"
    fire_on_own_writes: bool = False  # influent: call on-write triggers for their own writes
    timeout_seconds: float = 300.0  # influent: time limit of one plugin call

    @classmethod
    def from_api(cls, raw: dict | None) -> "TriggerSettings":
        raw = dict(raw or {})
        behavior = str(raw.get("error_behavior", "log")).lower()
        if behavior not in ERROR_BEHAVIORS:
            raise ValueError(f"error_behavior must be one of {', '.join(ERROR_BEHAVIORS)}")
        timeout = float(raw.get("timeout_seconds", cls.timeout_seconds))
        if timeout <= 0:
            raise ValueError("timeout_seconds must be positive")
        return cls(run_async=bool(raw.get("run_async", False)), error_behavior=behavior,
                   fire_on_own_writes=bool(raw.get("fire_on_own_writes", False)),
                   timeout_seconds=timeout)


@dataclass(frozen=True)
class Trigger:
    """A plugin bound to an event source (``specification``) of one database.

    ``start_ms``: writes and persist events before this time never fire the trigger (set on
    creation and on enable, so a re-enabled trigger does not replay what it missed)."""

    database: str
    name: str
    plugin_filename: str
    specification: str
    arguments: dict[str, str] | None = None
    settings: TriggerSettings = field(default_factory=TriggerSettings)
    disabled: bool = False
    start_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, data: bytes | str) -> "Trigger":
        d = json.loads(data)
        d["settings"] = TriggerSettings(**d.get("settings") or {})
        return cls(**d)

    def to_api(self) -> dict[str, Any]:
        """The shape of InfluxDB 3's create request (plus ``disabled``)."""
        return {"db": self.database, "trigger_name": self.name,
                "plugin_filename": self.plugin_filename,
                "trigger_specification": self.specification,
                "trigger_arguments": self.arguments, "disabled": self.disabled,
                "trigger_settings": asdict(self.settings)}


# ---- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineKeys:
    ns: str

    @property
    def subscriptions(self) -> str:
        return f"{self.ns}:subscriptions"

    @property
    def triggers(self) -> str:
        return f"{self.ns}:triggers"

    @property
    def version(self) -> str:
        return f"{self.ns}:engine_version"

    @property
    def logs(self) -> str:
        return f"{self.ns}:plugin_logs"

    @property
    def stats(self) -> str:
        return f"{self.ns}:engine_stats"

    @property
    def lag(self) -> str:
        return f"{self.ns}:engine_lag"

    def cache(self, scope: str, key: str) -> str:
        return f"{self.ns}:plugin_cache:{scope}:{key}"


def record_field(db: str, name: str) -> str:
    return f"{db}{SEP}{name}"


def stat_field(metric: str, *labels: str) -> str:
    return SEP.join((metric,) + labels)


# ---- async access (API, worker services) ---------------------------------------------------


class EngineCatalog:
    """Subscriptions and triggers of one namespace; reads of logs, stats and lags."""

    def __init__(self, client: aioredis.Redis, namespace: str):
        self.redis = client
        self.keys = EngineKeys(namespace)

    @classmethod
    def connect(cls, redis_url: str, namespace: str) -> "EngineCatalog":
        return cls(aioredis.from_url(redis_url), namespace)

    async def close(self) -> None:
        await self.redis.aclose()

    async def version(self) -> int:
        return int(await self.redis.get(self.keys.version) or 0)

    async def _put(self, key: str, fieldname: str, value: str, replace_existing: bool) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            if replace_existing:
                pipe.hset(key, fieldname, value)
            else:
                pipe.hsetnx(key, fieldname, value)
            pipe.incr(self.keys.version)
            added, _ = await pipe.execute()
        return bool(added) or replace_existing

    async def _delete(self, key: str, fieldname: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, fieldname)
            pipe.incr(self.keys.version)
            removed, _ = await pipe.execute()
        return bool(removed)

    # subscriptions
    async def create_subscription(self, sub: Subscription) -> bool:
        """False when the database already has a subscription of that name."""
        return await self._put(self.keys.subscriptions, record_field(sub.database, sub.name),
                               sub.to_json(), replace_existing=False)

    async def delete_subscription(self, db: str, name: str) -> bool:
        return await self._delete(self.keys.subscriptions, record_field(db, name))

    async def subscriptions(self, db: str | None = None) -> list[Subscription]:
        raw = await self.redis.hgetall(self.keys.subscriptions)
        subs = [Subscription.from_json(v) for v in raw.values()]
        return sorted((s for s in subs if db is None or s.database == db),
                      key=lambda s: (s.database, s.name))

    # triggers
    async def create_trigger(self, trigger: Trigger) -> bool:
        return await self._put(self.keys.triggers, record_field(trigger.database, trigger.name),
                               trigger.to_json(), replace_existing=False)

    async def trigger(self, db: str, name: str) -> Trigger | None:
        raw = await self.redis.hget(self.keys.triggers, record_field(db, name))
        return Trigger.from_json(raw) if raw is not None else None

    async def triggers(self, db: str | None = None) -> list[Trigger]:
        raw = await self.redis.hgetall(self.keys.triggers)
        found = [Trigger.from_json(v) for v in raw.values()]
        return sorted((t for t in found if db is None or t.database == db),
                      key=lambda t: (t.database, t.name))

    async def set_trigger_disabled(self, db: str, name: str, disabled: bool) -> Trigger | None:
        """Enable or disable; enabling moves ``start_ms`` to now. None if there is no trigger."""
        current = await self.trigger(db, name)
        if current is None:
            return None
        changed = replace(current, disabled=disabled,
                          start_ms=current.start_ms if disabled else now_ms())
        await self._put(self.keys.triggers, record_field(db, name), changed.to_json(),
                        replace_existing=True)
        return changed

    async def delete_trigger(self, db: str, name: str) -> bool:
        return await self._delete(self.keys.triggers, record_field(db, name))

    async def claim_instant(self, db: str, name: str, instant_s: int, owner: str,
                            hold_s: int) -> bool:
        """True for the first process to claim a scheduled trigger's instant."""
        key = f"{self.keys.ns}:trigger_fired:{db}:{name}:{instant_s}"
        return bool(await self.redis.set(key, owner, nx=True, ex=hold_s))

    # lag and counters
    async def report_lag(self, entries: dict[str, int]) -> None:
        """``entries``: lag field -> messages behind (see the key layout)."""
        if entries:
            stamp = now_ms()
            await self.redis.hset(self.keys.lag, mapping={
                k: f"{v}{SEP}{stamp}" for k, v in entries.items()})

    async def drop_lag(self, fields: list[str]) -> None:
        if fields:
            await self.redis.hdel(self.keys.lag, *fields)

    async def lags(self, max_age_ms: int = 120_000) -> dict[tuple[str, ...], int]:
        """Fresh lag entries, keyed by (kind, db, name, destination, partition)."""
        cutoff = now_ms() - max_age_ms
        out = {}
        for k, v in (await self.redis.hgetall(self.keys.lag)).items():
            lag, _, stamp = v.decode().partition(SEP)
            if int(stamp or 0) >= cutoff:
                out[tuple(k.decode().split(SEP))] = int(lag)
        return out

    async def incr(self, metric: str, *labels: str, by: int = 1) -> None:
        await self.redis.hincrby(self.keys.stats, stat_field(metric, *labels), by)

    async def stats(self) -> dict[tuple[str, ...], int]:
        raw = await self.redis.hgetall(self.keys.stats)
        return {tuple(k.decode().split(SEP)): int(v) for k, v in raw.items()}


# ---- sync access from plugin threads -------------------------------------------------------


class PluginStore:
    """What plugin calls touch while they run in their threads: cache, logs and counters.

    A synchronous client, because plugin code is synchronous and runs outside the event loop."""

    def __init__(self, redis_url: str, namespace: str):
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = EngineKeys(namespace)

    def close(self) -> None:
        self.redis.close()

    def cache_put(self, scope: str, key: str, value: Any, ttl: float | None) -> None:
        px = int(ttl * 1000) if ttl is not None and ttl > 0 else None
        self.redis.set(self.keys.cache(scope, key), pickle.dumps(value), px=px)

    def cache_get(self, scope: str, key: str, default: Any = None) -> Any:
        raw = self.redis.get(self.keys.cache(scope, key))
        return default if raw is None else pickle.loads(raw)

    def cache_delete(self, scope: str, key: str) -> bool:
        return bool(self.redis.delete(self.keys.cache(scope, key)))

    def log(self, db: str, trigger: str, level: str, text: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.keys.logs, {"time": str(time.time_ns()), "db": db, "trigger": trigger,
                                       "level": level, "text": text},
                      maxlen=LOG_CAP, approximate=True)
            pipe.hincrby(self.keys.stats, stat_field("log_lines", db, trigger, level), 1)
            pipe.execute()

    def incr(self, metric: str, *labels: str, by: int = 1) -> None:
        self.redis.hincrby(self.keys.stats, stat_field(metric, *labels), by)


LOG_SCHEMA = pa.schema([pa.field("event_time", pa.timestamp("ns"), nullable=False),
                        pa.field("trigger_name", pa.string()),
                        pa.field("log_level", pa.string()),
                        pa.field("log_text", pa.string())])


async def processing_engine_logs(catalog_redis: aioredis.Redis, namespace: str,
                                 database: str | None = None) -> pa.Table:
    """``system.processing_engine_logs`` as InfluxDB 3 shows it (event_time, trigger_name,
    log_level, log_text), oldest first; only ``database``'s triggers when given."""
    entries = await catalog_redis.xrange(EngineKeys(namespace).logs)
    cols: dict[str, list] = {f.name: [] for f in LOG_SCHEMA}
    for _, raw in entries:
        e = {k.decode(): v.decode() for k, v in raw.items()}
        if database is not None and e.get("db") != database:
            continue
        cols["event_time"].append(int(e.get("time", 0)))
        cols["trigger_name"].append(e.get("trigger", ""))
        cols["log_level"].append(e.get("level", ""))
        cols["log_text"].append(e.get("text", ""))
    return pa.table({"event_time": pa.array(cols["event_time"], pa.int64()).cast(pa.timestamp("ns")),
                     **{k: pa.array(cols[k], pa.string()) for k in
                        ("trigger_name", "log_level", "log_text")}}, schema=LOG_SCHEMA)
