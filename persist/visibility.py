"""What a reader may see of one table (pure): the retention cutoff and the tombstones.

Every reader applies the same rules — the query engine (SQL, InfluxQL and Flight all load tables
through ``QueryEngine.load_table``), persist (buffered rows about to become a file) and
compaction (files about to be merged) — so a row deleted or expired is invisible everywhere at
once and later physically removed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from persist.tombstones import Tombstone, drop_deleted

NS = {"ns": 1, "nsec": 1, "us": 1_000, "usec": 1_000, "µs": 1_000, "ms": 1_000_000,
      "msec": 1_000_000, "s": 10**9, "sec": 10**9, "secs": 10**9, "second": 10**9,
      "seconds": 10**9, "m": 60 * 10**9, "min": 60 * 10**9, "mins": 60 * 10**9,
      "minute": 60 * 10**9, "minutes": 60 * 10**9, "h": 3600 * 10**9, "hr": 3600 * 10**9,
      "hrs": 3600 * 10**9, "hour": 3600 * 10**9, "hours": 3600 * 10**9,
      "d": 86400 * 10**9, "day": 86400 * 10**9, "days": 86400 * 10**9,
      "w": 7 * 86400 * 10**9, "week": 7 * 86400 * 10**9, "weeks": 7 * 86400 * 10**9,
      "y": 31_557_600 * 10**9, "year": 31_557_600 * 10**9, "years": 31_557_600 * 10**9}
_PART = re.compile(r"\s*(\d+)\s*([a-zµ]+)", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """A humantime duration (``30d``, ``1h 30m``, ``72 hours``) in ns; ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError("empty duration")
    total, pos = 0, 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m or m.group(2).lower() not in NS:
            raise ValueError(f"invalid duration: {text!r} (use e.g. 30d, 12h, 1h 30m)")
        total += int(m.group(1)) * NS[m.group(2).lower()]
        pos = m.end()
        while pos < len(text) and text[pos] in " ,":
            pos += 1
    if total <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return total


def format_duration(ns: int) -> str:
    """The shortest exact ``<n><unit>`` form (InfluxQL style: 168h0m0s -> '7d')."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        if ns % NS[unit] == 0:
            return f"{ns // NS[unit]}{unit}"
    return f"{ns}ns"


@dataclass(frozen=True)
class Visibility:
    """Rules for one table: rows with ``time < cutoff`` are expired (None: kept forever);
    ``tombstones`` are those of the table (see persist/tombstones.py)."""

    cutoff: int | None = None
    tombstones: tuple[Tombstone, ...] = field(default=())

    @property
    def trivial(self) -> bool:
        return self.cutoff is None and not self.tombstones

    def file_expired(self, max_time: int) -> bool:
        return self.cutoff is not None and max_time < self.cutoff

    def for_file(self, min_time: int, max_time: int, tombstone_seq: int) -> list[Tombstone]:
        """Tombstones newer than the file that can touch its time range."""
        return [t for t in self.tombstones if t.id > tombstone_seq and t.overlaps(min_time, max_time)]

    def file_rows(self, table: pa.Table, min_time: int, max_time: int, tombstone_seq: int
                  ) -> pa.Table:
        return drop_deleted(self._unexpired(table),
                            self.for_file(min_time, max_time, tombstone_seq), by_write_time=False)

    def buffer_rows(self, table: pa.Table) -> pa.Table:
        return drop_deleted(self._unexpired(table), list(self.tombstones), by_write_time=True)

    def _unexpired(self, table: pa.Table) -> pa.Table:
        if self.cutoff is None or table.num_rows == 0:
            return table
        return table.filter(pc.greater_equal(pc.cast(table.column("time"), pa.int64()), self.cutoff))


NOTHING_HIDDEN = Visibility()
