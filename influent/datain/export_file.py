"""Line protocol files exported by ``influx_inspect export`` (InfluxDB 1.x) and
``influxd inspect export-lp`` (2.x), read as batches of lines per target database.

1.x exports look like::

    # DDL
    CREATE DATABASE db0 WITH NAME autogen
    CREATE RETENTION POLICY rp1 ON db0 DURATION 1h REPLICATION 1
    # DML
    # CONTEXT-DATABASE:db0
    # CONTEXT-RETENTION-POLICY:autogen
    cpu,host=a value=1 1000000000

The DDL has one ``CREATE DATABASE <db> WITH NAME <rp>`` per policy and does not say which is
the default. Points of ``autogen`` (1.x's default default), ``default``, the policy named with
``--default-rp``, or a database's only policy land in the database itself; another policy's in
``<db>/<rp>`` (:mod:`influent.datain.naming`). Other ``#`` lines are comments. 2.x exports are plain line protocol and need a target database.
Files may be gzip'd (told by their first bytes, not their name).
"""
from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from influent.datain.naming import policy_database

_CREATE_DB = re.compile(rb"^CREATE DATABASE\s+(\S+)(?:\s+WITH\b.*?\bNAME\s+(\S+))?", re.I)
_CONTEXT_DB = b"# CONTEXT-DATABASE:"
_CONTEXT_RP = b"# CONTEXT-RETENTION-POLICY:"


def _unquote(name: bytes) -> str:
    text = name.decode("utf-8", "replace")
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@dataclass
class LineBatch:
    """Consecutive data lines of one file bound for one database."""
    database: str | None          # None: the file said nothing and no --db was given
    lines: list[bytes]
    line_numbers: list[int]       # 1-based line number in the file of each line


@dataclass
class ExportReader:
    """Reads one file; ``databases`` collects the DDL's databases and their default policy."""

    target_db: str | None = None              # --db: every point goes there
    batch_bytes: int = 4 * 1024 * 1024
    default_rp: str | None = None             # --default-rp
    databases: dict[str, list[str]] = field(default_factory=dict)  # db -> policies in the DDL
    _db: str | None = None
    _rp: str | None = None

    def target(self) -> str | None:
        if self.target_db:
            return self.target_db
        if self._db is None:
            return None
        only = self.databases.get(self._db, []) == [self._rp]
        return policy_database(self._db, self._rp, only or self._rp == self.default_rp)

    def batches(self, stream: BinaryIO) -> Iterator[LineBatch]:
        lines: list[bytes] = []
        numbers: list[int] = []
        size = 0
        target = self.target()

        def cut() -> LineBatch:
            nonlocal lines, numbers, size
            batch = LineBatch(target, lines, numbers)
            lines, numbers, size = [], [], 0
            return batch

        for number, raw in enumerate(stream, start=1):
            line = raw.rstrip(b"\r\n")
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith(b"#"):
                changed = self._context(stripped)
                if changed and self.target() != target:
                    if lines:
                        yield cut()
                    target = self.target()
                continue
            match = _CREATE_DB.match(stripped)
            if match:
                policies = self.databases.setdefault(_unquote(match[1]), [])
                if match[2]:
                    policies.append(_unquote(match[2]))
                continue
            if stripped.upper().startswith(b"CREATE RETENTION POLICY"):
                continue
            lines.append(line)
            numbers.append(number)
            size += len(line) + 1
            if size >= self.batch_bytes:
                yield cut()
        if lines:
            yield cut()

    def _context(self, line: bytes) -> bool:
        if line.startswith(_CONTEXT_DB):
            self._db = line[len(_CONTEXT_DB):].strip().decode("utf-8", "replace")
            return True
        if line.startswith(_CONTEXT_RP):
            self._rp = line[len(_CONTEXT_RP):].strip().decode("utf-8", "replace")
            return True
        return False


def open_export(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(line stream, raw file): gzip is inflated when the file starts with its magic bytes;
    the raw file's position tells how far the reading got (for the progress bar)."""
    raw = open(path, "rb")
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw), raw
    raw.seek(0)
    return raw, raw
