"""Vectorised line protocol parser vs a straightforward per-line Python parser, same data.

Both parse the same TSBS cpu-only messages into the same Arrow output (checked equal on the
first run); the run prints lines/s of each and the ratio. Runs alternate between the parsers
and the best of each is kept, so both see the same machine conditions.

    python -m benchmarks.parse_lp                      # 200 000 lines, messages of 5 000
    python -m benchmarks.parse_lp --lines 50000 --repeat 1
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import click
import pyarrow as pa

from benchmarks.tsbs import generate_messages
from topics.line_protocol import ARROW_TYPES, parse_lp
from topics.line_protocol.grammar import LineSyntaxError, parse_text

Tables = dict[str, tuple[pa.RecordBatch, pa.Array]]   # measurement -> (batch, line numbers)

_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}
# Python's int() and float() also take "1_0", " 1", "+1", ".5", "nan", "inf": check the grammar.
_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_INT = re.compile(r"-?[0-9]+i")
_UINT = re.compile(r"[0-9]+u")


def _value(token: str) -> tuple[str, object]:
    if token.endswith("i") and _INT.fullmatch(token):
        return "integer", int(token[:-1])
    if token.endswith("u") and _UINT.fullmatch(token):
        return "uinteger", int(token[:-1])
    if token.startswith('"') and token.endswith('"') and len(token) > 1:
        return "string", token[1:-1]
    if token in _TRUE:
        return "boolean", True
    if token in _FALSE:
        return "boolean", False
    if _FLOAT.fullmatch(token):
        return "float", float(token)
    raise ValueError(f"invalid field value {token!r}")


class _Table:
    """Column lists for one measurement, filled row by row (None where a row lacks a column)."""

    def __init__(self) -> None:
        self.rows = 0
        self.kinds: dict[str, str] = {}
        self.columns: dict[str, list] = {}
        self.times: list[int] = []
        self.lines: list[int] = []

    def add(self, line: int, tags: dict[str, str], fields: dict[str, tuple[str, object]],
            ts: int) -> str | None:
        for key in tags:
            if self.kinds.get(key, "tag") != "tag":
                return f"column '{key}' is a field; this line writes it as a tag"
        for key, (kind, _) in fields.items():
            if self.kinds.get(key, kind) != kind:
                return f"column '{key}' has type {self.kinds[key]}; this line writes {kind}"
        for key, value in list(tags.items()) + [(k, v) for k, (_, v) in fields.items()]:
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = [None] * self.rows
                self.kinds[key] = "tag" if key in tags else fields[key][0]
            column.append(value)
        self.rows += 1
        for column in self.columns.values():
            if len(column) < self.rows:
                column.append(None)
        self.times.append(ts)
        self.lines.append(line)
        return None

    def batch(self) -> pa.RecordBatch:
        tags = sorted(k for k, kind in self.kinds.items() if kind == "tag")
        fields = sorted(k for k, kind in self.kinds.items() if kind != "tag")
        arrays = [pa.array(self.columns[k], pa.string()) for k in tags]
        arrays += [pa.array(self.columns[k], ARROW_TYPES[self.kinds[k]]) for k in fields]
        arrays.append(pa.array(self.times, pa.timestamp("ns")))
        return pa.RecordBatch.from_arrays(arrays, names=tags + fields + ["time"])


def parse_per_line(data: bytes, default_time: int) -> tuple[Tables, list]:
    """The straightforward way: split each line, convert each value in Python, build Arrow at
    the end. Lines with escapes or quotes go through the exact per-line parser; the others are
    split at spaces, commas and equals signs. Checks the value grammar and the rules within and
    between lines; bad lines are collected with a reason."""
    tables: dict[str, _Table] = {}
    errors = []
    for number, line in enumerate(data.decode("utf-8").split("\n"), 1):
        line = line.rstrip("\r")
        if not line or line.startswith("#"):
            continue
        try:
            if "\\" in line or '"' in line:
                parsed = parse_text(line.encode())
                if parsed is None:
                    continue
                measurement, tags = parsed.measurement, dict(parsed.tags)
                fields = {k: (t, v) for k, t, v in parsed.fields}
                ts = default_time if parsed.timestamp is None else parsed.timestamp
            else:
                parts = line.split(" ")
                series = parts[0].split(",")
                measurement = series[0]
                tags = dict(item.split("=", 1) for item in series[1:])
                fields = {}
                for item in parts[1].split(","):
                    key, token = item.split("=", 1)
                    fields[key] = _value(token)
                ts = int(parts[2]) if len(parts) > 2 else default_time
                if len(parts) > 3 or not measurement or len(tags) != len(series) - 1 \
                        or set(tags) & set(fields) or "time" in tags or "time" in fields:
                    raise ValueError("invalid line")
        except (ValueError, IndexError, LineSyntaxError) as exc:
            errors.append((number, str(exc)))
            continue
        reason = tables.setdefault(measurement, _Table()).add(number, tags, fields, ts)
        if reason:
            errors.append((number, reason))
    return {name: (t.batch(), pa.array(t.lines, pa.int32())) for name, t in tables.items()}, errors


def parse_vectorised(data: bytes, default_time: int) -> tuple[Tables, list]:
    result = parse_lp(data, default_time=default_time)
    return ({name: (t.batch, t.lines) for name, t in result.tables.items()},
            [(e.line, e.reason) for e in result.errors])


Parser = Callable[[bytes, int], tuple[Tables, list]]


def _timed(parse: Parser, messages: list[bytes], keep: bool) -> tuple[float, list]:
    """Seconds to parse all messages (and the outputs, when ``keep``: kept outside the clock)."""
    outputs = []
    elapsed = 0.0
    for message in messages:
        start = time.perf_counter()
        out = parse(message, 0)
        elapsed += time.perf_counter() - start
        if keep:
            outputs.append(out)
    return elapsed, outputs


def check_equal(ours: list[tuple[Tables, list]], theirs: list[tuple[Tables, list]]) -> None:
    """Both parsers must produce the same tables (columns, types, values, line numbers)."""
    for i, ((mine, my_errors), (other, other_errors)) in enumerate(zip(ours, theirs, strict=True)):
        if my_errors or other_errors:
            raise AssertionError(f"message {i}: unexpected errors {my_errors[:3]} {other_errors[:3]}")
        if mine.keys() != other.keys():
            raise AssertionError(f"message {i}: tables differ: {sorted(mine)} vs {sorted(other)}")
        for name, (batch, lines) in mine.items():
            other_batch, other_lines = other[name]
            if not batch.equals(other_batch) or not lines.equals(other_lines):
                raise AssertionError(f"message {i}: table {name} differs")


@click.command()
@click.option("--lines", "total", default=200_000, show_default=True, help="TSBS lines to parse")
@click.option("--per-message", default=5_000, show_default=True, help="lines per message")
@click.option("--hosts", default=100, show_default=True, help="simulated hosts")
@click.option("--repeat", default=3, show_default=True, help="runs per parser (best is kept)")
@click.option("--seed", default=123, show_default=True)
def main(total: int, per_message: int, hosts: int, repeat: int, seed: int) -> None:
    """Parse the same TSBS data with both parsers and report lines/s and the ratio."""
    messages = generate_messages(total, per_message, seed=seed, hosts=hosts)
    count = sum(m.count(b"\n") for m in messages)
    size = sum(len(m) for m in messages)
    click.echo(f"data: {count} lines, {size / 1e6:.1f} MB, {len(messages)} messages "
               f"of {per_message} lines, {hosts} hosts")
    slow = fast = float("inf")
    for run in range(repeat):
        slow_run, theirs = _timed(parse_per_line, messages, keep=run == 0)
        fast_run, ours = _timed(parse_vectorised, messages, keep=run == 0)
        if run == 0:
            check_equal(ours, theirs)
            click.echo("check: both parsers produce equal tables")
            del ours, theirs
        slow, fast = min(slow, slow_run), min(fast, fast_run)
    click.echo(f"per-line Python : {count / slow:12,.0f} lines/s  ({slow:.3f} s)")
    click.echo(f"vectorised      : {count / fast:12,.0f} lines/s  ({fast:.3f} s)")
    click.echo(f"ratio           : {slow / fast:12.1f} x")


if __name__ == "__main__":
    main()
