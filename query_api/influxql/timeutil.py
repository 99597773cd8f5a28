"""Time in InfluxQL: literals, GROUP BY time() windows, and the two output encodings.

Windows follow InfluxDB 1.x's ``IteratorOptions.Window``: floor ``t - offset`` to the interval
in the zone's wall clock (tz()) and shift back when the window start has another UTC offset
(DST). Output times are RFC3339 with the nanosecond fraction trimmed (Go's ``RFC3339Nano``,
``Z`` for a zero offset) or integers for ``epoch=``. Everything on arrays is vectorised with
``pyarrow.compute``.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql.arrowutil import arange

#: influxql.MinTime (models.MinNanoTime)
MIN_TIME = -(2 ** 63) + 2

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
    if tz is None and ns.null_count == 0:  # numpy's integer floor division: one fast pass
        flat = ns.combine_chunks() if isinstance(ns, pa.ChunkedArray) else ns
        x = flat.to_numpy()
        return pa.array((x - offset) // interval * interval + offset if offset
                        else x // interval * interval)
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


def window_grid(first: int, last: int, interval: int, offset: int = 0,
                tz: str | None = None) -> pa.Array:
    """Window starts from ``first`` (itself a window start) through ``last`` (the window of
    the end time), stepping as 1.x's fill iterator does: ``+interval``, and where the zone's
    offset at ``window - offset - 1ns`` changes by less than the interval, shift by the
    change. Vectorised between offset changes (one loop turn per DST transition)."""
    if last < first:
        return pa.array([], pa.int64())
    if tz is None:
        return pc.add(pc.multiply(arange((last - first) // interval + 1), interval), first)
    pieces: list[pa.Array] = []
    current = first
    zone_now = zone_offsets(pa.array([first - offset], pa.int64()), tz)[0].as_py()
    while current <= last:
        naive = pc.add(pc.multiply(arange((last - current) // interval + 1), interval), current)
        # the segment's first window was checked when it was stepped to: look from the next
        offs = zone_offsets(pc.subtract(naive.slice(1), offset + 1), tz)
        changed = pc.indices_nonzero(pc.not_equal(offs, zone_now))
        if len(changed) == 0:
            pieces.append(naive)
            break
        at = changed[0].as_py() + 1
        pieces.append(naive.slice(0, at))
        new_zone = offs[at - 1].as_py()
        current = naive[at].as_py()
        if abs(zone_now - new_zone) < interval:
            current += zone_now - new_zone
        zone_now = new_zone
    return pa.concat_arrays(pieces) if pieces else pa.array([], pa.int64())


# ---- output encodings ---------------------------------------------------------------------


def format_rfc3339(ns: pa.Array, tz: str | None = None) -> pa.Array:
    """RFC3339 strings as InfluxDB 1.x prints them: trailing zeros of the fraction trimmed,
    ``Z`` for UTC (and any zero offset), ``+hh:mm`` otherwise.

    GROUP BY time results repeat the same few window times across series: those are
    formatted once and spread back with ``take``."""
    ns = ns.cast(pa.int64())
    if tz is None and len(ns) <= SMALL_FORMAT:
        values = ns.to_pylist()
        if all(v is not None and v >= 0 for v in values):
            return pa.array([_utc_text(v) for v in values], pa.string())
    if len(ns) > 256:
        distinct = pc.unique(ns)
        if len(distinct) * 4 < len(ns):
            return pc.take(_format(distinct, tz), pc.index_in(ns, value_set=distinct))
    return _format(ns, tz)


#: Up to this many UTC times are formatted one by one (memoised): a dozen Arrow kernels cost
#: more than that for the few windows of a small GROUP BY time result.
SMALL_FORMAT = 512
_UTC_TEXTS: dict[int, str] = {}


def _utc_text(ns: int) -> str:
    """:func:`_format` of one time from 1970 on (int64 ns end in 2262), UTC, memoised
    (window starts repeat from query to query)."""
    text = _UTC_TEXTS.get(ns)
    if text is None:
        seconds, fraction = divmod(ns, 1_000_000_000)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        if fraction:
            text += "." + f"{fraction:09d}".rstrip("0")
        text += "Z"
        if len(_UTC_TEXTS) >= 100_000:
            _UTC_TEXTS.clear()
        _UTC_TEXTS[ns] = text
    return text


def _format(ns: pa.Array, tz: str | None) -> pa.Array:
    seconds = pc.subtract(ns, floor_mod(ns, 1_000_000_000))
    fraction = pc.subtract(ns, seconds)
    stamps = seconds.cast(pa.timestamp("ns", tz=tz or "UTC"))
    body = pc.strftime(stamps.cast(pa.timestamp("s", tz=tz or "UTC")),
                       format="%Y-%m-%dT%H:%M:%S")
    digits = pc.utf8_rtrim(pc.utf8_lpad(fraction.cast(pa.string()), width=9, padding="0"),
                           characters="0")
    body = pc.if_else(pc.equal(fraction, 0), body,
                      pc.binary_join_element_wise(body, digits, "."))
    if tz is None:
        return pc.binary_join_element_wise(body, pa.scalar("Z"), "")
    offsets = pc.divide(zone_offsets(ns, tz), 60_000_000_000)  # minutes east of UTC
    sign = pc.if_else(pc.less(offsets, 0), pa.scalar("-"), pa.scalar("+"))
    minutes = pc.abs(offsets)
    hours = pc.utf8_lpad(pc.divide(minutes, 60).cast(pa.string()), width=2, padding="0")
    mins = pc.utf8_lpad(floor_mod(minutes, 60).cast(pa.string()), width=2, padding="0")
    off = pc.binary_join_element_wise(sign, hours, pa.scalar(":"), mins, "")
    off = pc.if_else(pc.equal(offsets, 0), pa.scalar("Z"), off)
    return pc.binary_join_element_wise(body, off, "")


def to_epoch(ns: pa.Array, epoch: str) -> pa.Array:
    """Integers in the ``epoch`` unit (truncated toward zero, as Go's integer division)."""
    unit = EPOCH_UNITS.get(epoch, 1)
    ns = ns.cast(pa.int64())
    return ns if unit == 1 else pc.divide(ns, unit)
