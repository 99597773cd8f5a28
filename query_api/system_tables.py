"""The lifecycle's ``system.*`` tables of a database: ``parquet_files`` (InfluxDB 3's columns plus
``level`` and ``partition_key``), ``compaction_events``, ``processing_engine_triggers``,
``queries``, and ``databases`` / ``tables`` with InfluxDB 3's ``deleted`` and
``hard_deletion_date`` (soft deletes, persist/soft_deletes.py). Only the tables a query names
are read."""
from __future__ import annotations

import json
import re

import pyarrow as pa

from persist.catalog import Catalog
from persist.engine_catalog import EngineCatalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.soft_deletes import SoftDeletes, format_ms
from query_api.query_log import QueryLog

NAMES = ("parquet_files", "compaction_events", "processing_engine_triggers", "queries",
         "databases", "tables")


def named(sql: str) -> list[str]:
    text = sql.lower()
    return [n for n in NAMES if re.search(rf"system\.{n}\b", text)]


async def parquet_files(catalog: Catalog, db: str) -> pa.Table:
    metas = [m for t in await catalog.tables(db) for m in await catalog.files(db, t)]
    metas.sort(key=lambda m: (m.table, m.partition_key, m.min_time, m.path))
    return pa.table({
        "table_name": pa.array([m.table for m in metas], pa.string()),
        "path": pa.array([m.path for m in metas], pa.string()),
        "size_bytes": pa.array([m.size for m in metas], pa.int64()),
        "row_count": pa.array([m.rows for m in metas], pa.int64()),
        "min_time": pa.array([m.min_time for m in metas], pa.int64()),
        "max_time": pa.array([m.max_time for m in metas], pa.int64()),
        "level": pa.array([m.level for m in metas], pa.int64()),
        "partition_key": pa.array([m.partition_key for m in metas], pa.string()),
    })


async def compaction_events(catalog: Catalog, db: str) -> pa.Table:
    events = [e for e in await LifecycleCatalog(catalog).events() if e.get("database") == db]
    ints = ("level", "input_files", "output_files", "input_bytes", "output_bytes", "input_rows",
            "output_rows", "duration_ms")
    columns = {"time": pa.array([e["time"] for e in events], pa.timestamp("ns")),
               "table_name": pa.array([e["table"] for e in events], pa.string()),
               "partition_key": pa.array([e["partition_key"] for e in events], pa.string()),
               "action": pa.array([e["action"] for e in events], pa.string())}
    columns.update({k: pa.array([e.get(k, 0) for e in events], pa.int64()) for k in ints})
    columns["status"] = pa.array([e["status"] for e in events], pa.string())
    return pa.table(columns)


async def processing_engine_triggers(catalog: Catalog, db: str) -> pa.Table:
    triggers = await EngineCatalog(catalog.redis, catalog.ns).triggers(db)
    return pa.table({
        "trigger_name": pa.array([t.name for t in triggers], pa.string()),
        "plugin_filename": pa.array([t.plugin_filename for t in triggers], pa.string()),
        "trigger_specification": pa.array([t.specification for t in triggers], pa.string()),
        "trigger_arguments": pa.array([json.dumps(t.arguments) if t.arguments else None
                                       for t in triggers], pa.string()),
        "disabled": pa.array([t.disabled for t in triggers], pa.bool_()),
    })


async def databases(catalog: Catalog) -> pa.Table:
    """Every database, soft-deleted ones under their new names (as InfluxDB 3's
    ``system.databases``)."""
    active = await catalog.databases()
    gone = [r for r in await SoftDeletes(catalog).records() if r.table is None]
    periods = [await catalog.retention(db) for db in active] + [None] * len(gone)
    return pa.table({
        "database_name": pa.array(active + [r.database for r in gone], pa.string()),
        "retention_period_ns": pa.array(periods, pa.int64()),
        "deleted": pa.array([False] * len(active) + [True] * len(gone), pa.bool_()),
        "hard_deletion_date": pa.array([None] * len(active) + [
            format_ms(r.hard_delete_at_ms) for r in gone], pa.string())})


async def tables(catalog: Catalog, db: str) -> pa.Table:
    """The tables of ``db``, soft-deleted ones under their new names."""
    active = await catalog.tables(db)
    gone = [r for r in await SoftDeletes(catalog).records() if r.table and r.database == db]
    counts = [len((await catalog.table_schema(db, t)).columns) for t in active]
    counts += [len((await catalog.table_schema(db, r.table)).columns) for r in gone]
    return pa.table({
        "database_name": pa.array([db] * (len(active) + len(gone)), pa.string()),
        "table_name": pa.array(active + [r.table for r in gone], pa.string()),
        "column_count": pa.array(counts, pa.int64()),
        "deleted": pa.array([False] * len(active) + [True] * len(gone), pa.bool_()),
        "hard_deletion_date": pa.array([None] * len(active) + [
            format_ms(r.hard_delete_at_ms) for r in gone], pa.string())})


async def lifecycle_system_tables(catalog: Catalog, db: str, sql: str,
                                  recent: QueryLog | None) -> dict[str, pa.Table]:
    found: dict[str, pa.Table] = {}
    for name in named(sql):
        if name == "parquet_files":
            found[name] = await parquet_files(catalog, db)
        elif name == "compaction_events":
            found[name] = await compaction_events(catalog, db)
        elif name == "processing_engine_triggers":
            found[name] = await processing_engine_triggers(catalog, db)
        elif name == "queries":
            found[name] = (recent or QueryLog()).table(db)
        elif name == "databases":
            found[name] = await databases(catalog)
        elif name == "tables":
            found[name] = await tables(catalog, db)
    return found
