"""``influent import FILE...``: export files into ``influent.writes``, counted per measurement.

Each batch is parsed locally as the ingest agent will parse it (precision ``ns``), to count
the points per measurement for the closing report and to name bad lines with their file and
line number; the batch is sent whole, so the ingest agent also keeps every bad line, with its
reason, on ``influent.rejected``.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from influent.config import Settings
from influent.datain.export_file import ExportReader, open_export
from influent.datain.sink import WritesSink
from persist.admission import database_name_error as validate_db_name
from topics.line_protocol import ParsedTable, parse_lp

COMPACT_EVERY = 4_000_000  # keys gathered before duplicates are dropped (16 bytes each)


@dataclass
class PointKeys:
    """Distinct (series, time) keys of one measurement across batches: an export writes one
    line per field, so lines are not points. Series keys get small ids (one dict entry per
    series); the keys themselves are int64 pairs in NumPy, compacted as they grow."""

    series: dict[str, int] = field(default_factory=dict)
    chunks: list[np.ndarray] = field(default_factory=list)
    pending: int = 0

    def add(self, table: ParsedTable) -> None:
        batch = table.batch
        n = batch.num_rows
        if table.tags:
            pieces = [pc.binary_join_element_wise(t + "\x1e", batch.column(t), "",
                                                  null_handling="skip") for t in table.tags]
            key = pc.binary_join_element_wise(*pieces, "\x1f", null_handling="skip")
        else:
            key = pa.repeat(pa.scalar("", pa.string()), n)
        uniques = pc.unique(key)
        ids = np.array([self.series.setdefault(k, len(self.series)) for k in uniques.to_pylist()],
                       dtype=np.int64)
        series_ids = ids[pc.index_in(key, value_set=uniques).to_numpy(zero_copy_only=False)]
        times = pc.cast(batch.column("time"), pa.int64()).to_numpy(zero_copy_only=False)
        self.chunks.append(np.stack([series_ids, times], axis=1))
        self.pending += n
        if self.pending >= COMPACT_EVERY:
            self.compact()

    def compact(self) -> None:
        if self.chunks:
            self.chunks = [np.unique(np.concatenate(self.chunks), axis=0)]
        self.pending = 0

    def count(self) -> int:
        self.compact()
        return len(self.chunks[0]) if self.chunks else 0


class NoDatabase(ValueError):
    pass


@dataclass
class ImportResult:
    keys: dict[tuple[str, str], PointKeys] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)   # "<file>:<line>: <reason>"
    databases: set[str] = field(default_factory=set)  # named by a DDL, maybe without points
    lines: int = 0

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """Points (distinct series and time) per (database, measurement)."""
        return {key: keys.count() for key, keys in self.keys.items()}


@dataclass
class ImportProgress:
    total_bytes: int
    read_bytes: int = 0
    rows: int = 0  # valid lines sent (an export writes one line per field of a point)
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.rows:,} lines, {self.rows / elapsed:,.0f} lines/s"


def _count(body: bytes, numbers: list[int], path: str, db: str, result: ImportResult) -> int:
    parsed = parse_lp(body, precision="ns", default_time=time.time_ns())
    for table in parsed.tables.values():
        result.keys.setdefault((db, table.name), PointKeys()).add(table)
    for err in parsed.errors:
        where = numbers[err.line - 1] if 1 <= err.line <= len(numbers) else err.line
        result.errors.append(f"{path}:{where}: {err.reason}")
    return parsed.points


async def import_files(settings: Settings, paths: list[str], target_db: str | None,
                       batch_bytes: int, on_progress: Callable[[ImportProgress], None],
                       default_rp: str | None = None) -> ImportResult:
    result = ImportResult()
    progress = ImportProgress(total_bytes=sum(os.path.getsize(p) for p in paths))
    sink = WritesSink(settings, batch_bytes)
    await sink.start()
    try:
        done_bytes = 0
        for path in paths:
            reader = ExportReader(target_db=target_db, batch_bytes=batch_bytes,
                                  default_rp=default_rp)
            stream, raw = open_export(path)
            with raw:
                for batch in reader.batches(stream):
                    if batch.database is None:
                        raise NoDatabase(f"{path}:{batch.line_numbers[0]}: no database for these "
                                         "lines (no '# CONTEXT-DATABASE:' line): pass --db")
                    reason = validate_db_name(batch.database)
                    if reason:
                        raise NoDatabase(f"{path}:{batch.line_numbers[0]}: database "
                                         f"{batch.database!r}: {reason} (pass --db)")
                    body = b"\n".join(batch.lines)
                    progress.rows += await asyncio.to_thread(
                        _count, body, batch.line_numbers, path, batch.database, result)
                    result.lines += len(batch.lines)
                    await sink.write(batch.database, body)
                    progress.read_bytes = done_bytes + raw.tell()
                    on_progress(progress)
            done_bytes += os.path.getsize(path)
            result.databases.update(target_db or db for db in reader.databases)
        await sink.flush()
    finally:
        await sink.stop()
    return result
