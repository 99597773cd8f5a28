"""From segments to tables: timestamp precision, the rules between lines, Arrow batches.

Rules between lines of one input (as the ingest agent applies them, no catalog needed): the
first accepted line that uses a (measurement, column) fixes the column's kind (tag or field) and
field type; a later line that offers another kind or type is rejected, that line only, and a
rejected line fixes nothing.

Because every row of a segment offers the same kinds and types, a segment is either accepted or
rejected as a whole, decided at its first row: if that row is accepted it fixes all its columns
and every later row of the segment agrees; if it is rejected the conflicting fix stays. So the
rule runs once per segment (in order of first line), never per row; only the wording of each
rejected row's reason looks at the row's own line (the conflict that holds there).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from topics.line_protocol.model import ARROW_TYPES, TAG, FieldType, LineError, Segment

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

#: precision name -> nanoseconds per unit (0: "auto", guessed per timestamp)
PRECISIONS: dict[str, int] = {
    "": 1, "n": 1, "ns": 1, "nanosecond": 1, "nanoseconds": 1,
    "u": 1_000, "us": 1_000, "µs": 1_000, "microsecond": 1_000, "microseconds": 1_000,
    "ms": 1_000_000, "millisecond": 1_000_000, "milliseconds": 1_000_000,
    "s": 1_000_000_000, "second": 1_000_000_000, "seconds": 1_000_000_000,
    "m": 60_000_000_000, "minute": 60_000_000_000, "minutes": 60_000_000_000,
    "h": 3_600_000_000_000, "hour": 3_600_000_000_000, "hours": 3_600_000_000_000,
    "auto": 0,
}


def precision_unit(precision: str) -> int:
    """Nanoseconds per unit of a precision name (0 for "auto"); ValueError if unknown."""
    try:
        return PRECISIONS[precision.strip().lower()]
    except KeyError:
        raise ValueError(f"invalid precision '{precision}': expected one of ns, us, ms, s, auto") from None


def truncate_default_time(default_ns: int, unit: int) -> int:
    """A default time is cut to the write's precision (as InfluxDB does with the server time)."""
    return default_ns if unit <= 1 else default_ns - default_ns % unit


def scale_time(raw: pa.Array, unit: int) -> tuple[pa.Array, pa.Array | None]:
    """Timestamps as written -> nanoseconds. Returns (values, mask of rows that overflow).

    "auto" (unit 0) follows InfluxDB 3: |t| / 1e9 < 5 means seconds, < 5000 milliseconds,
    < 5e6 microseconds, else nanoseconds (each scaled value stays below 5e18: no overflow).
    """
    if unit == 1:
        return raw, None
    if unit == 0:
        def within(limit: int) -> pa.Array:
            return pc.and_(pc.greater(raw, -limit), pc.less(raw, limit))
        factor = pc.if_else(within(5_000_000_000), 1_000_000_000,
                            pc.if_else(within(5_000_000_000_000), 1_000_000,
                                       pc.if_else(within(5_000_000_000_000_000), 1_000, 1)))
        return pc.multiply(raw, pc.cast(factor, pa.int64())), None
    lo, hi = -(-_INT64_MIN // unit), _INT64_MAX // unit
    ok = pc.fill_null(pc.and_(pc.greater_equal(raw, lo), pc.less_equal(raw, hi)), True)
    if pc.all(ok).as_py():
        return pc.multiply(raw, unit), None
    return pc.multiply(pc.if_else(ok, raw, 0), unit), pc.invert(ok)


@dataclass
class Assembled:
    tables: dict[str, tuple[pa.RecordBatch, list[str], dict[str, FieldType], pa.Array]]
    errors: list[LineError]
    points: int


def _filter(seg: Segment, keep: pa.Array) -> Segment:
    return Segment(seg.measurement, pc.filter(seg.lines, keep),
                   {k: pc.filter(v, keep) for k, v in seg.tags.items()},
                   {k: (t, pc.filter(v, keep)) for k, (t, v) in seg.fields.items()},
                   pc.filter(seg.time, keep))


def _describe(kind: str) -> str:
    return "a tag" if kind == TAG else f"a {kind} field"


def _conflict_reason(column: str, fixed: str, line: int, offered: str) -> str:
    if fixed != TAG and offered != TAG:
        return (f"field '{column}' has type {fixed} (set by line {line}); "
                f"this line writes it as {offered}")
    return (f"column '{column}' is {_describe(fixed)} (set by line {line}); "
            f"this line writes it as {_describe(offered)}")


def _reject_conflicts(seg: Segment, fixed: dict[tuple[str, str], tuple[str, int]],
                      original: Callable[[list[int]], list[str]], errors: list[LineError]) -> None:
    """One error per row of a rejected segment, naming the conflict that holds at that row.

    Rows after the first may meet more conflicts (columns fixed in between); the one reported is
    the first by tags-then-fields, name order among those fixed before the row, whichever path
    parsed it.
    """
    conflicts = sorted(
        ((column, kind, fixed[(seg.measurement, column)]) for column, kind in seg.signature().items()
         if (seg.measurement, column) in fixed and fixed[(seg.measurement, column)][0] != kind),
        key=lambda c: (c[1] != TAG, c[0]))
    numbers = seg.lines.to_pylist()
    for number, text in zip(numbers, original(numbers)):
        column, kind, (have, line) = next(c for c in conflicts if c[2][1] < number)
        errors.append(LineError(number, text, _conflict_reason(column, have, line, kind)))


def assemble(segments: list[Segment], precision: str, default_ns: int | None,
             original: Callable[[list[int]], list[str]]) -> Assembled:
    """Scale time, apply the rules between lines and build one batch per measurement.

    ``default_ns`` fills missing timestamps (None leaves them null); ``original`` returns the
    text of the given line numbers, for error reports.
    """
    unit = precision_unit(precision)
    errors: list[LineError] = []
    scaled: list[Segment] = []
    for seg in segments:
        if len(seg) == 0:
            continue
        ns, overflow = scale_time(seg.time, unit)
        if overflow is not None:
            numbers = pc.filter(seg.lines, overflow).to_pylist()
            written = pc.filter(seg.time, overflow).to_pylist()
            for n, text, ts in zip(numbers, original(numbers), written):
                errors.append(LineError(n, text, f"timestamp {ts} at precision '{precision}' is out of "
                                                 f"range (beyond int64 nanoseconds)"))
        seg = Segment(seg.measurement, seg.lines, seg.tags, seg.fields, ns)
        if overflow is not None:
            seg = _filter(seg, pc.invert(overflow))
            if len(seg) == 0:
                continue
        if default_ns is not None and seg.time.null_count:
            seg.time = pc.fill_null(seg.time, default_ns)
        scaled.append(seg)

    scaled.sort(key=lambda s: s.lines[0].as_py())
    fixed: dict[tuple[str, str], tuple[str, int]] = {}
    accepted: dict[str, list[Segment]] = {}
    rejected: list[Segment] = []
    for seg in scaled:
        signature = seg.signature()
        if any((have := fixed.get((seg.measurement, column))) is not None and have[0] != kind
               for column, kind in signature.items()):
            rejected.append(seg)
            continue
        first = seg.lines[0].as_py()
        for column, kind in signature.items():
            fixed.setdefault((seg.measurement, column), (kind, first))
        accepted.setdefault(seg.measurement, []).append(seg)
    for seg in rejected:
        _reject_conflicts(seg, fixed, original, errors)

    tables = {name: _table(segs) for name, segs in accepted.items()}
    errors.sort(key=lambda e: e.line)
    return Assembled(tables, errors, sum(len(t[3]) for t in tables.values()))


def _table(segs: list[Segment]) -> tuple[pa.RecordBatch, list[str], dict[str, FieldType], pa.Array]:
    """One batch: tag columns (sorted), field columns (sorted), time; rows in input order."""
    tags = sorted({k for s in segs for k in s.tags})
    field_types: dict[str, FieldType] = {}
    for s in segs:
        for k, (t, _) in s.fields.items():
            field_types.setdefault(k, t)
    fields = dict(sorted(field_types.items()))
    names = tags + list(fields) + ["time"]
    types = [pa.string()] * len(tags) + [ARROW_TYPES[t] for t in fields.values()] + [pa.int64()]

    def column(seg: Segment, name: str, typ: pa.DataType) -> pa.Array:
        if name == "time":
            return seg.time
        arr = seg.tags.get(name)
        if arr is None:
            found = seg.fields.get(name)
            arr = found[1] if found else None
        return pa.nulls(len(seg), typ) if arr is None else arr

    if len(segs) == 1:
        seg = segs[0]
        arrays = [column(seg, n, t) for n, t in zip(names, types)]
        lines = seg.lines
    else:
        arrays = [pa.concat_arrays([column(s, n, t) for s in segs]) for n, t in zip(names, types)]
        lines = pa.concat_arrays([s.lines for s in segs])
        order = pc.sort_indices(lines)
        lines = pc.take(lines, order)
        arrays = [pc.take(a, order) for a in arrays]
    arrays[-1] = arrays[-1].view(pa.timestamp("ns"))
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return batch, tags, fields, lines
