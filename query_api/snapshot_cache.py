"""Buffer snapshots a query API process has already fetched, kept decoded between queries.

A snapshot field names one batch (source partition, offset, partition key) and its bytes never
change while it exists: it is written once by ingest (again, identically, on a replay or a
republish) and deleted when its rows are in a file. So each query reads, in one MULTI/EXEC,
the table's schema, files and the snapshot fields with their sizes, and fetches only the
snapshots it does not hold yet. A field that vanished between the two reads (persisted
meanwhile) makes it read the state again, so a query still sees a persist entirely or not at
all. Entries are keyed by field *and* size, so a field rewritten with other bytes (a topic
recreated under the same Redis) is fetched again; entries whose field is gone are dropped at
the table's next read, and the least recently used go when the cache passes its byte limit.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict

import pyarrow as pa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from persist.catalog import Catalog, TableSchema
from persist.parquet_files import ParquetFileMeta
from topics.wire import decode_batches

#: How often a query reads the state again when snapshots vanish under it before it reads
#: them the plain way (everything in one MULTI/EXEC).
ATTEMPTS = 5

Key = tuple[str, str, str, int]  # database, table, field, size


class SnapshotCache:
    def __init__(self, catalog: Catalog, max_bytes: int):
        self.catalog = catalog
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Key, pa.Table] = OrderedDict()
        self.by_table: dict[tuple[str, str], set[Key]] = {}
        self.bytes = 0
        self.hits = 0
        self.fetched = 0

    async def table_state(self, db: str, table: str
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[pa.Table]]:
        """Schema, files and decoded buffer snapshots of a table, consistent with one another."""
        schema, files, keyed = await self.keyed_state(db, table)
        return schema, files, [data for _, data in keyed]

    async def keyed_state(self, db: str, table: str, first: tuple | None = None
                          ) -> tuple[TableSchema, list[ParquetFileMeta], list[tuple[Key | None, pa.Table]]]:
        """Like :meth:`table_state`, each snapshot with its key (None when read the plain way):
        a key names the same bytes for as long as it exists. ``first``: the caller's own read
        of :meth:`Catalog.table_state_sizes`, used for the first attempt."""
        for _ in range(ATTEMPTS):
            if first is not None:
                (schema, files, sizes), first = first, None
            else:
                schema, files, sizes = await self.catalog.table_state_sizes(db, table)
            keys = [(db, table, f, n) for f, n in sorted(sizes.items())]
            missing = [k for k in keys if k not in self.entries]
            values = await self.catalog.snapshot_values(db, table, [k[2] for k in missing])
            if any(v is None or len(v) != k[3] for k, v in zip(missing, values)):
                continue  # persisted (or rewritten) between the two reads: read the state again
            decoded = (await asyncio.to_thread(lambda: [decode_batches(v) for v in values])
                       if values else [])  # nothing new: no hop to a thread
            self._forget_gone(db, table, set(keys))
            found = {}
            for key in keys:
                if key in self.entries:
                    self.entries.move_to_end(key)
                    found[key] = self.entries[key]
                    self.hits += 1
            for key, data in zip(missing, decoded):
                found[key] = data
                self._put(key, data)
                self.fetched += 1
            return schema, files, [(k, found[k]) for k in keys]
        schema, files, raw = await self.catalog.table_state(db, table)
        return schema, files, await asyncio.to_thread(lambda: [(None, decode_batches(v))
                                                               for v in raw])

    def _put(self, key: Key, data: pa.Table) -> None:
        if key[3] > self.max_bytes:
            return
        self.entries[key] = data
        self.by_table.setdefault(key[:2], set()).add(key)
        self.bytes += key[3]
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: Key) -> None:
        del self.entries[key]
        self.by_table[key[:2]].discard(key)
        self.bytes -= key[3]

    def _forget_gone(self, db: str, table: str, present: set[Key]) -> None:
        for key in self.by_table.get((db, table), set()) - present:
            self._drop(key)


class SnapshotCacheMetrics:
    """Prometheus view of a process's snapshot cache (registered once the engine exists)."""

    def __init__(self, cache_of):
        self.cache_of = cache_of  # () -> SnapshotCache | None

    def collect(self):
        cache = self.cache_of()
        if cache is None:
            return
        yield GaugeMetricFamily("influent_query_snapshot_cache_bytes",
                                "Bytes of buffer snapshots kept decoded", value=cache.bytes)
        yield CounterMetricFamily("influent_query_snapshot_cache_hits",
                                  "Snapshots a query found in the cache", value=cache.hits)
        yield CounterMetricFamily("influent_query_snapshot_cache_fetched",
                                  "Snapshots a query fetched from Redis", value=cache.fetched)
