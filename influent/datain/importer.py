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

from influent.config import Settings
from influent.datain.export_file import ExportReader, open_export
from influent.datain.sink import WritesSink
from topics.line_protocol import parse_lp


class NoDatabase(ValueError):
    pass


@dataclass
class ImportResult:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)   # "<file>:<line>: <reason>"
    databases: set[str] = field(default_factory=set)  # named by a DDL, maybe without points
    lines: int = 0


@dataclass
class ImportProgress:
    total_bytes: int
    read_bytes: int = 0
    rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s"


def _count(body: bytes, numbers: list[int], path: str, db: str, result: ImportResult) -> int:
    parsed = parse_lp(body, precision="ns", default_time=time.time_ns())
    for table in parsed.tables.values():
        key = (db, table.name)
        result.counts[key] = result.counts.get(key, 0) + table.batch.num_rows
    for err in parsed.errors:
        where = numbers[err.line - 1] if 1 <= err.line <= len(numbers) else err.line
        result.errors.append(f"{path}:{where}: {err.reason}")
    return parsed.points


async def import_files(settings: Settings, paths: list[str], target_db: str | None,
                       batch_bytes: int, on_progress: Callable[[ImportProgress], None]) -> ImportResult:
    result = ImportResult()
    progress = ImportProgress(total_bytes=sum(os.path.getsize(p) for p in paths))
    sink = WritesSink(settings, batch_bytes)
    await sink.start()
    try:
        done_bytes = 0
        for path in paths:
            reader = ExportReader(target_db=target_db, batch_bytes=batch_bytes)
            stream, raw = open_export(path)
            with raw:
                for batch in reader.batches(stream):
                    if batch.database is None:
                        raise NoDatabase(f"{path}:{batch.line_numbers[0]}: no database for these "
                                         "lines (no '# CONTEXT-DATABASE:' line): pass --db")
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
