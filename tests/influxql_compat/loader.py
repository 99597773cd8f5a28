"""Build an in-memory :class:`~query_api.influxql.source.MemorySource` from line protocol,
with the project's LP parser (``topics.line_protocol.parse_lp``), the same bytes the
compatibility suite writes to InfluxDB 1.x."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from persist.catalog import TableSchema
from query_api.influxql.source import MemorySource
from topics.line_protocol import parse_lp

HERE = Path(__file__).resolve().parent


def load_lp(source: MemorySource, db: str, data: bytes) -> None:
    """Parse ``data`` and add its measurements to ``db`` (the fixture has one point per
    series and time, so no deduplication is needed)."""
    result = parse_lp(data, precision="ns")
    if result.errors:
        raise ValueError(f"fixture line protocol has errors: {result.errors}")
    source.add_database(db)
    for name, parsed in result.tables.items():
        columns = {tag: "tag" for tag in parsed.tags}
        columns.update(parsed.fields)
        columns["time"] = "time"
        source.add_table(db, name, pa.Table.from_batches([parsed.batch]), TableSchema(columns))


def fixture_source() -> MemorySource:
    """Databases ``compat`` (data.lp) and ``other`` (other.lp)."""
    source = MemorySource()
    load_lp(source, "compat", (HERE / "data.lp").read_bytes())
    load_lp(source, "other", (HERE / "other.lp").read_bytes())
    return source


class MemoryWrites:
    """``SELECT ... INTO`` points into a :class:`MemorySource` (each target measurement is
    written once by the suite, so a write replaces the measurement's table)."""

    def __init__(self, source: MemorySource):
        self.source = source

    async def write_lines(self, db: str, lines: bytes) -> None:
        load_lp(self.source, db, lines)
