"""Queries answered from the value caches (query_api/cache_feed.py).

- SQL: the table functions ``last_cache('table'[, 'name'])`` and ``distinct_cache('table'[,
  'name'])`` (DataFusion Python table functions), and ``system.last_caches`` /
  ``system.distinct_caches`` (the definitions), as InfluxDB 3 has them.
- InfluxQL, beyond InfluxDB 3: ``SELECT last(...) ... GROUP BY *`` and TSBS's *lastpoint*
  (``SELECT * ... GROUP BY hostname ORDER BY time DESC LIMIT 1``) read the newest rows of each
  key from a last cache keyed on (a superset of) the grouping tags, and ``SHOW TAG VALUES``
  reads the combinations of a distinct cache holding the keys, instead of the whole table.
  Either is used only when it gives the very answer the table would: the cache is seeded and
  has dropped nothing, no delete or retention period hides rows of the table, it keeps enough
  rows per key (``count`` >= LIMIT) and columns, and no older row could change the answer (for
  ``last`` every newest row has every asked field; for a raw SELECT every kept row has one of
  the selected fields), all within the query's time range. Otherwise the query reads the table
  as always.
"""
from __future__ import annotations

import re
from functools import partial

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from persist.catalog import TableSchema
from persist.value_caches import CacheCatalog, DistinctCacheDef, LastCacheDef
from persist.visibility import Visibility
from query_api.cache_feed import CacheNotFound, ValueCaches
from query_api.influxql.cached_reads import NewestRows
from query_api.value_caches import DistinctValueCache, LastValueCache

CACHE_CALL = re.compile(
    r"\b(last_cache|distinct_cache)\s*\(\s*'((?:[^']|'')*)'\s*(?:,\s*'((?:[^']|'')*)'\s*)?\)",
    re.IGNORECASE)
KINDS = {"last_cache": "last", "distinct_cache": "distinct"}


def cache_calls(sql: str) -> list[tuple[str, str, str | None]]:
    """(kind, table, name or None) of every cache table function the query text calls."""
    return [(KINDS[m.group(1).lower()], m.group(2).replace("''", "'"),
             m.group(3).replace("''", "'") if m.group(3) is not None else None)
            for m in CACHE_CALL.finditer(sql)]


def without_cache_calls(sql: str) -> str:
    """The query text with its cache calls blanked (their table names are no table scans)."""
    return CACHE_CALL.sub(" ", sql)


def _literal(arg) -> str | None:
    value = datafusion.Expr(arg).python_value()
    return None if value is None else str(value.as_py() if hasattr(value, "as_py") else value)


def _cache_table(caches: ValueCaches, kind: str, db: str, *args) -> datafusion.Table:
    if not 1 <= len(args) <= 2:
        raise ValueError(f"{kind}_cache takes a table name and an optional cache name")
    table, name = _literal(args[0]), _literal(args[1]) if len(args) == 2 else None
    cache = caches.find(kind, db, table, name)
    return datafusion.Table(pads.dataset(caches.read(cache)))


def register_cache_functions(ctx: datafusion.SessionContext, caches: ValueCaches | None,
                             db: str) -> None:
    if caches is None:
        return
    for kind in ("last", "distinct"):
        ctx.register_udtf(datafusion.udtf(partial(_cache_table, caches, kind, db), f"{kind}_cache"))


async def prepare_cache_calls(caches: ValueCaches | None, db: str, sql: str) -> None:
    """Wait until every cache the query calls is seeded; LookupError names a missing one."""
    for kind, table, name in cache_calls(sql):
        if caches is None:
            raise CacheNotFound("value caches are not enabled in this process")
        await caches.ready(kind, db, table, name)


# ---- system tables -----------------------------------------------------------------------------
async def cache_system_tables(definitions: CacheCatalog, db: str, sql: str) -> dict[str, pa.Table]:
    text = sql.lower()
    wanted = [n for n in ("last_caches", "distinct_caches") if f"system.{n}" in text]
    if not wanted:
        return {}
    defs = await definitions.all(db)
    found = {}
    if "last_caches" in wanted:
        lasts = [d for d in defs if isinstance(d, LastCacheDef)]
        found["last_caches"] = pa.table({
            "table": pa.array([d.table for d in lasts], pa.string()),
            "name": pa.array([d.name for d in lasts], pa.string()),
            "key_column_names": pa.array([list(d.key_columns) for d in lasts],
                                         pa.list_(pa.string())),
            "value_column_names": pa.array([None if d.value_columns is None else
                                            list(d.value_columns) for d in lasts],
                                           pa.list_(pa.string())),
            "count": pa.array([d.count for d in lasts], pa.int64()),
            "ttl": pa.array([d.ttl for d in lasts], pa.int64())})
    if "distinct_caches" in wanted:
        distincts = [d for d in defs if isinstance(d, DistinctCacheDef)]
        found["distinct_caches"] = pa.table({
            "table": pa.array([d.table for d in distincts], pa.string()),
            "name": pa.array([d.name for d in distincts], pa.string()),
            "column_names": pa.array([list(d.columns) for d in distincts], pa.list_(pa.string())),
            "max_cardinality": pa.array([d.max_cardinality for d in distincts], pa.int64()),
            "max_age_seconds": pa.array([d.max_age for d in distincts], pa.int64())})
    return found


# ---- InfluxQL ----------------------------------------------------------------------------------
def covering_newest_rows(caches: ValueCaches, db: str, table: str, schema: TableSchema,
                         rules: Visibility, wanted: NewestRows) -> pa.Table | None:
    """Per group, the newest rows a statement needs (query_api/influxql/cached_reads.py), from
    a last cache keyed on (a superset of) the group's tags that holds them all; None when no
    cache does."""
    if not rules.trivial:
        return None
    for cache in caches.table_caches(db, table):
        d = cache.definition
        if (not isinstance(cache, LastValueCache) or not set(wanted.group_tags) <= set(d.key_columns)
                or d.count < wanted.per_group):
            continue
        if d.value_columns is not None and (wanted.all_columns or
                                            not set(wanted.fields) <= set(d.value_columns)):
            continue
        if not caches.completeness(cache):
            continue
        rows = caches.read(cache, newest=wanted.per_group)
        if rows.num_rows and not _answers(rows, wanted):
            continue
        return rows
    return None


def _answers(rows: pa.Table, wanted: NewestRows) -> bool:
    """Whether no older row than these can change the statement's answer."""
    present = [f for f in wanted.fields if f in rows.column_names]
    if wanted.every_field:
        if len(present) < len(wanted.fields) or any(rows.column(f).null_count for f in present):
            return False  # a newest row lacks a field: its last value is in an older row
    else:
        shown = None
        for f in present:
            valid = pc.is_valid(rows.column(f))
            shown = valid if shown is None else pc.or_(shown, valid)
        if shown is None or not pc.all(shown).as_py():
            return False  # a row the statement would skip: an older one would take its place
    times = rows.column("time").cast(pa.int64())
    return not ((wanted.lo is not None and pc.min(times).as_py() < wanted.lo) or
                (wanted.hi is not None and pc.max(times).as_py() > wanted.hi))


def covering_distinct_rows(caches: ValueCaches, db: str, table: str, rules: Visibility,
                           keys: list[str]) -> pa.Table | None:
    """Rows holding every combination of ``keys`` the table has, from a complete distinct
    cache with those columns; None when no cache does."""
    if not rules.trivial:
        return None
    for cache in caches.table_caches(db, table):
        if not isinstance(cache, DistinctValueCache) or not set(keys) <= set(cache.definition.columns):
            continue
        if caches.completeness(cache):
            return caches.read(cache)
    return None
