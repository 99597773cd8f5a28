"""Time in InfluxQL: literals, GROUP BY time() windows, and the two output encodings.

Windows follow InfluxDB 1.x's ``IteratorOptions.Window``: floor ``t - offset`` to the interval
in the zone's wall clock (tz()) and shift back when the window start has another UTC offset
(DST). Output times are RFC3339 with the nanosecond fraction trimmed (Go's ``RFC3339Nano``,
``Z`` for a zero offset) or integers for ``epoch=``. Everything on arrays is vectorised with
``pyarrow.compute``.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

#: influxql.MinTime / MaxTime (models.MinNanoTime / MaxNanoTime)
MIN_TIME = -(2 ** 63) + 2
MAX_TIME = 2 ** 63 - 2

EPOCH_UNITS = {"ns": 1, "n": 1, "u": 1_000, "µ": 1_000, "us": 1_000, "ms": 1_000_000,
               "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}

_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?)?$")


class InvalidTime(ValueError):
    pass


class UnknownTimeZone(ValueError):
    pass


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The named IANA zone; raises :class:`UnknownTimeZone` as 1.x's ``unable to find``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(f"unable to find time zone {name}") from exc


def parse_time_literal(text: str, tz: str | None = None) -> int:
    """A time string as InfluxQL accepts it (RFC3339[Nano], ``YYYY-MM-DD HH:MM:SS[.f]``,
    ``YYYY-MM-DD``) -> ns since the epoch; zone-less strings are read in ``tz`` (UTC default)."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise InvalidTime(text)
    year, month, day, hh, mm, ss, frac, offset = m.groups()
    try:
        if offset == "Z":
            tzinfo: timezone | ZoneInfo = timezone.utc
        elif offset:
            sign = -1 if offset[0] == "-" else 1
            tzinfo = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        else:
            tzinfo = zone(tz) if tz else timezone.utc
        moment = datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0),
                          int(ss or 0), tzinfo=tzinfo)
    except ValueError as exc:
        raise InvalidTime(text) from exc
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = delta.days * 86400 + delta.seconds
    return seconds * 1_000_000_000 + int((frac or "").ljust(9, "0") or 0)


# ---- windows ------------------------------------------------------------------------------


def floor_mod(values: pa.Array, divisor: int) -> pa.Array:
    """``values mod divisor`` with a non-negative result (Arrow's divide truncates)."""
    rem = pc.subtract(values, pc.multiply(pc.divide(values, divisor), divisor))
    return pc.if_else(pc.less(rem, 0), pc.add(rem, divisor), rem)


def zone_offsets(ns: pa.Array, tz: str) -> pa.Array:
    """UTC offset in ns of ``tz`` at each instant (int64 array)."""
    zone(tz)
    stamps = ns.cast(pa.timestamp("ns", tz=tz))
    return pc.subtract(pc.local_timestamp(stamps).cast(pa.int64()), ns)


def window_starts(ns: pa.Array, interval: int, offset: int = 0, tz: str | None = None) -> pa.Array:
    """Start of the GROUP BY time(interval, offset) window holding each time (int64 ns)."""
    ns = ns.cast(pa.int64())
    shifted = pc.subtract(ns, offset) if offset else ns
    if tz is None:
        return pc.add(pc.subtract(shifted, floor_mod(shifted, interval)), offset)
    zoff = zone_offsets(shifted, tz)
    start = pc.subtract(shifted, floor_mod(pc.add(shifted, zoff), interval))
    diff = pc.subtract(zoff, zone_offsets(start, tz))
    adjust = pc.and_(pc.not_equal(diff, 0), pc.less(pc.abs(diff), interval))
    start = pc.if_else(adjust, pc.add(start, diff), start)
    return pc.add(start, offset)


def window_start(t: int, interval: int, offset: int = 0, tz: str | None = None) -> int:
    return window_starts(pa.array([t], pa.int64()), interval, offset, tz)[0].as_py()


def window_grid(first: int, last: int, interval: int, tz: str | None = None) -> pa.Array:
    """Window starts from ``first`` (itself a window start) through the window of ``last``,
    stepping as 1.x's fill iterator does (``+interval``, then DST correction)."""
    if last < first:
        return pa.array([], pa.int64())
    count = (last - first) // interval + 1
    naive = pc.add(pc.multiply(pa.array(range(count), pa.int64()), interval), first)
    if tz is None:
        return naive
    base = zone_offsets(pa.array([first], pa.int64()), tz)[0].as_py()
    offs = zone_offsets(pc.subtract(naive, 1), tz)
    diff = pc.subtract(pa.scalar(base, pa.int64()), offs)
    adjust = pc.less(pc.abs(diff), interval)
    grid = pc.if_else(adjust, pc.add(naive, diff), naive)
    return pc.filter(grid, pc.less_equal(grid, last)) if count else grid


# ---- output encodings ---------------------------------------------------------------------


def format_rfc3339(ns: pa.Array, tz: str | None = None) -> pa.Array:
    """RFC3339 strings as InfluxDB 1.x prints them: trailing zeros of the fraction trimmed,
    ``Z`` for UTC (and any zero offset), ``+hh:mm`` otherwise."""
    ns = ns.cast(pa.int64())
    stamps = ns.cast(pa.timestamp("ns", tz=tz or "UTC"))
    body = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S")
    # %S carries the 9-digit fraction for ns stamps; only the fraction can end in zeros here
    body = pc.replace_substring_regex(body, pattern=r"\.?0+$", replacement="")
    if tz is None:
        return pc.binary_join_element_wise(body, pa.scalar("Z"), "")
    off = pc.strftime(stamps, format="%z")
    off = pc.replace_substring_regex(off, pattern=r"^([+-]\d\d)(\d\d)$", replacement=r"\1:\2")
    off = pc.if_else(pc.equal(off, "+00:00"), pa.scalar("Z"), off)
    return pc.binary_join_element_wise(body, off, "")


def to_epoch(ns: pa.Array, epoch: str) -> pa.Array:
    """Integers in the ``epoch`` unit (truncated toward zero, as Go's integer division)."""
    unit = EPOCH_UNITS.get(epoch, 1)
    ns = ns.cast(pa.int64())
    return ns if unit == 1 else pc.divide(ns, unit)
