"""SHOW statements: databases, retention policies, measurements, tag keys and values, field
keys and series, shaped as InfluxDB 1.x returns them (sorted; one series per measurement, or
one unnamed series for SHOW SERIES).

Schema-only answers come from :meth:`InfluxQLSource.schema`; answers that depend on the data
(tag values, series, anything with WHERE) run a DISTINCT over the measurement in DataFusion.
"""
from __future__ import annotations

import asyncio
import re

import pyarrow as pa
import pyarrow.compute as pc

from query_api import sql_guard
from query_api.influxql import ast
from query_api.influxql.cached_reads import cached_distinct_rows
from query_api.influxql.conditions import compile_condition, quote_ident, split_condition
from query_api.influxql.results import Series, StatementResult
from query_api.influxql.select import plain_strings
from query_api.influxql.source import InfluxQLSource

FIELD_TYPE_NAMES = {"float": "float", "integer": "integer", "uinteger": "unsigned",
                    "string": "string", "boolean": "boolean"}


class StatementError(ValueError):
    """A statement-level error reported as ``{"statement_id": n, "error": ...}``."""


def _strings(values: list[str]) -> pa.Table:
    return pa.table([pa.array(values, pa.string())], names=["c0"])


async def resolve_database(named: str | None, default: str | None, source: InfluxQLSource,
                           rp: str | None = None) -> str:
    """The database a statement reads (``ON db``/``FROM db..m`` before the ``db`` parameter);
    a retention policy other than autogen/default maps to database ``db/rp`` as InfluxDB 3's
    v1 API does."""
    db = named or default
    if not db:
        raise StatementError("database name required")
    if rp and rp not in ("autogen", "default"):
        db = f"{db}/{rp}"
    if db not in await source.databases():
        raise StatementError(f"database not found: {db}")
    return db


async def measurements_of(sources: tuple[ast.Measurement, ...], db: str,
                          source: InfluxQLSource) -> list[str]:
    """Measurement names the FROM clause selects in ``db`` (all when there is no FROM)."""
    tables = await source.tables(db)
    if not sources:
        return sorted(tables)
    chosen: set[str] = set()
    for m in sources:
        if m.regex is not None:
            rx = re.compile(m.regex)
            chosen.update(t for t in tables if rx.search(t))
        elif m.name in tables:
            chosen.add(m.name)
    return sorted(chosen)


def _matching(table: pa.Table, kinds: dict[str, str], condition: ast.Expr | None,
              columns: list[str], now_ns: int) -> pa.Table:
    """DISTINCT ``columns`` of the rows matching ``condition``. Time bounds only select whole
    shard groups, as 1.x answers SHOW statements from the series index of the shards that
    overlap the range (:func:`shard_group_range`)."""
    names = set(table.column_names)
    kinds = {k: v for k, v in kinds.items() if k in names}
    rng, residual = split_condition(condition, now_ns, None)
    parts = []
    lo, hi = shard_group_range(rng.lower, rng.upper)
    if lo is not None:
        parts.append(f'CAST("time" AS BIGINT) >= {lo}')
    if hi is not None:
        parts.append(f'CAST("time" AS BIGINT) <= {hi}')
    if residual is not None:
        parts.append(compile_condition(residual, kinds, now_ns, None))
    where = " WHERE " + " AND ".join(parts) if parts else ""
    select = ", ".join(f"{quote_ident(c)} AS \"__k{i}\"" if c in names else
                       f"CAST(NULL AS VARCHAR) AS \"__k{i}\"" for i, c in enumerate(columns))
    ctx = sql_guard.new_session()
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    ctx.register_record_batches("m", [batches])
    if not columns:
        select = "1 AS __one"
    return plain_strings(sql_guard.plan(ctx, f"SELECT DISTINCT {select} FROM m{where}").to_arrow_table())


#: InfluxDB 1.x's shard group duration for a retention policy without expiry (7 days); groups
#: start at multiples of it since Go's zero time (Mondays 00:00 UTC).
SHARD_GROUP_NS = 7 * 86_400_000_000_000
_SHARD_ORIGIN_NS = 4 * 86_400_000_000_000  # 1970-01-05, a Monday


def shard_group_range(lower: int | None, upper: int | None) -> tuple[int | None, int | None]:
    """Widen [lower, upper] to the 7-day shard groups that overlap it."""
    def start(t: int) -> int:
        return t - (t - _SHARD_ORIGIN_NS) % SHARD_GROUP_NS
    lo = None if lower is None else start(lower)
    hi = None if upper is None else start(upper) + SHARD_GROUP_NS - 1
    return lo, hi


def _page(values: list, limit: int, offset: int) -> list:
    values = values[offset:]
    return values[:limit] if limit else values


async def _has_rows(source: InfluxQLSource, db: str, name: str, condition: ast.Expr | None,
                    now_ns: int) -> bool:
    if condition is None:
        return True
    table = await source.load(db, name)
    kinds = (await source.schema(db, name)).columns
    found = await asyncio.to_thread(_matching, table, kinds, condition, [], now_ns)
    return found.num_rows > 0


async def show_databases(source: InfluxQLSource) -> StatementResult:
    dbs = sorted(await source.databases())
    return StatementResult([Series("databases", ["name"], _strings(dbs), has_time=False)])


async def show_retention_policies(stmt: ast.ShowRetentionPolicies, db: str | None,
                                  source: InfluxQLSource) -> StatementResult:
    await resolve_database(stmt.database, db, source)
    table = pa.table({"name": ["autogen"], "duration": ["0s"],
                      "shardGroupDuration": ["168h0m0s"], "replicaN": [1], "default": [True]})
    return StatementResult([Series(None, table.column_names, table, has_time=False)])


async def show_measurements(stmt: ast.ShowMeasurements, db: str | None, source: InfluxQLSource,
                            now_ns: int) -> StatementResult:
    try:
        name = await resolve_database(stmt.database, db, source)
    except StatementError as exc:
        if str(exc).startswith("database not found"):
            return StatementResult()  # 1.x answers an empty result here
        raise
    names = sorted(await source.tables(name))
    if stmt.name_op in ("=~", "!~"):
        rx = re.compile(stmt.name_value or "")
        keep = stmt.name_op == "=~"
        names = [n for n in names if bool(rx.search(n)) == keep]
    elif stmt.name_op in ("=", "!="):
        names = [n for n in names if (n == stmt.name_value) == (stmt.name_op == "=")]
    if stmt.condition is not None and any(
            isinstance(node, ast.VarRef) and node.name.lower() == "time"
            for node in ast.walk(stmt.condition)):
        raise StatementError("SHOW MEASUREMENTS doesn't support time in WHERE clause")
    names = [n for n in names if await _has_rows(source, name, n, stmt.condition, now_ns)]
    names = _page(names, stmt.limit, stmt.offset)
    if not names:
        return StatementResult()
    return StatementResult([Series("measurements", ["name"], _strings(names), has_time=False)])


async def show_tag_keys(stmt: ast.ShowTagKeys, db: str | None, source: InfluxQLSource,
                        now_ns: int) -> StatementResult:
    name = await resolve_database(stmt.database, db, source)
    # 1.x ignores time bounds here (tag keys come from the whole index)
    _, condition = split_condition(stmt.condition, now_ns, None)
    out = []
    for m in await measurements_of(stmt.sources, name, source):
        keys = (await source.schema(name, m)).tags
        if condition is not None:
            if not await _has_rows(source, name, m, condition, now_ns):
                continue
        keys = _page(keys, stmt.limit, stmt.offset)
        if keys:
            out.append(Series(m, ["tagKey"], _strings(keys), has_time=False))
    return StatementResult(out)


def _key_matches(stmt: ast.ShowTagValues, key: str) -> bool:
    op, values = stmt.key_op, stmt.key_values
    if op == "=":
        return key == values[0]
    if op == "!=":
        return key != values[0]
    if op == "IN":
        return key in values
    hit = bool(re.search(values[0], key))
    return hit if op == "=~" else not hit


async def show_tag_values(stmt: ast.ShowTagValues, db: str | None, source: InfluxQLSource,
                          now_ns: int) -> StatementResult:
    name = await resolve_database(stmt.database, db, source)
    out = []
    for m in await measurements_of(stmt.sources, name, source):
        kinds = (await source.schema(name, m)).columns
        keys = sorted(k for k, v in kinds.items() if v == "tag" and _key_matches(stmt, k))
        if not keys:
            continue
        table = await cached_distinct_rows(source, stmt, name, m, keys)  # a covering cache
        if table is None:
            table = await source.load(name, m)
        key_col: list[pa.Array] = []
        value_col: list[pa.Array] = []
        for key in keys:
            found = await asyncio.to_thread(_matching, table, kinds, stmt.condition, [key],
                                            now_ns)
            values = pc.drop_null(found.column(0).combine_chunks()) if found.num_rows else (
                pa.array([], pa.string()))
            values = pc.take(values, pc.array_sort_indices(values))
            value_col.append(values.cast(pa.string()))
            key_col.append(pa.repeat(pa.scalar(key), len(values)).cast(pa.string()))
        keys_arr = pa.concat_arrays(key_col)
        vals_arr = pa.concat_arrays(value_col)
        table_out = pa.table([keys_arr, vals_arr], names=["key", "value"])
        if stmt.offset or stmt.limit:
            end = stmt.offset + stmt.limit if stmt.limit else table_out.num_rows
            table_out = table_out.slice(stmt.offset, max(0, end - stmt.offset))
        if table_out.num_rows:
            out.append(Series(m, ["key", "value"], table_out, has_time=False))
    return StatementResult(out)


async def show_field_keys(stmt: ast.ShowFieldKeys, db: str | None, source: InfluxQLSource
                          ) -> StatementResult:
    name = await resolve_database(stmt.database, db, source)
    out = []
    for m in await measurements_of(stmt.sources, name, source):
        fields = (await source.schema(name, m)).fields
        keys = _page(sorted(fields), stmt.limit, stmt.offset)
        if keys:
            table = pa.table({"fieldKey": pa.array(keys, pa.string()),
                              "fieldType": pa.array([FIELD_TYPE_NAMES[fields[k]] for k in keys],
                                                    pa.string())})
            out.append(Series(m, ["fieldKey", "fieldType"], table, has_time=False))
    return StatementResult(out)


def escape_key_part(values: pa.Array, measurement: bool = False) -> pa.Array:
    """Line-protocol escaping of series-key parts (commas and spaces; ``=`` in tags)."""
    chars = [",", " "] if measurement else [",", "=", " "]
    for ch in chars:
        values = pc.replace_substring(values, pattern=ch, replacement="\\" + ch)
    return values


def series_keys(measurement: str, tags: list[str], distinct: pa.Table) -> pa.Array:
    """``measurement,k1=v1,k2=v2`` for each row of DISTINCT tag values (missing tags left
    out), vectorised."""
    n = distinct.num_rows
    prefix = escape_key_part(pa.array([measurement], pa.string()), measurement=True)[0].as_py()
    keys = pa.repeat(pa.scalar(prefix), n).cast(pa.string())
    for i, tag in enumerate(tags):
        col = distinct.column(i).combine_chunks().cast(pa.string())
        part = pc.binary_join_element_wise(
            pa.scalar("," + escape_key_part(pa.array([tag]))[0].as_py() + "="),
            escape_key_part(col), "")
        keys = pc.binary_join_element_wise(keys, pc.fill_null(part, ""), "")
    return keys


async def show_series(stmt: ast.ShowSeries, db: str | None, source: InfluxQLSource,
                      now_ns: int) -> StatementResult:
    name = await resolve_database(stmt.database, db, source)
    parts: list[pa.Array] = []
    for m in await measurements_of(stmt.sources, name, source):
        kinds = (await source.schema(name, m)).columns
        tags = sorted(k for k, v in kinds.items() if v == "tag")
        table = await source.load(name, m)
        if table.num_rows == 0:
            continue
        found = await asyncio.to_thread(_matching, table, kinds, stmt.condition, tags, now_ns)
        if found.num_rows == 0:
            continue
        keys = series_keys(m, tags, found) if tags else pa.array([m], pa.string())
        parts.append(pc.take(keys, pc.array_sort_indices(keys)))
    if not parts:
        return StatementResult()
    keys = pa.concat_arrays(parts)
    if stmt.offset or stmt.limit:
        end = stmt.offset + stmt.limit if stmt.limit else len(keys)
        keys = keys.slice(stmt.offset, max(0, end - stmt.offset))
    if len(keys) == 0:
        return StatementResult()
    return StatementResult([Series(None, ["key"], pa.table([keys], names=["key"]),
                                   has_time=False)])
