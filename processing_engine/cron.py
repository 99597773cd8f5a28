"""Cron schedules with seconds (pure), read as InfluxDB 3 reads ``cron:<expr>`` triggers.

InfluxDB 3 parses these with Rust's ``cron`` crate, whose format differs from Unix cron:

    sec  min  hour  day-of-month  month  day-of-week  [year]
    0-59 0-59 0-23  1-31          1-12   1-7          1970-2099
                                  JAN-DEC SUN-SAT (Sunday is 1)

Each field is ``*`` (or ``?``), a value, a range ``a-b``, a step ``*/n``, ``a/n`` (from a to
the maximum) or ``a-b/n``, or a comma-separated list of those. Every field must match (day of
month AND day of week). ``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly`` are
accepted. Times are UTC.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_FIELDS = (  # name, min, max, names (value of the first name is min)
    ("seconds", 0, 59, None), ("minutes", 0, 59, None), ("hours", 0, 23, None),
    ("days of month", 1, 31, None), ("months", 1, 12, _MONTHS), ("days of week", 1, 7, _DAYS),
    ("years", 1970, 2099, None),
)
_SHORTCUTS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
              "@weekly": "0 0 0 * * 1", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
              "@hourly": "0 0 * * * *"}
#: How far ahead a schedule is searched before it is declared never to fire again.
SEARCH_DAYS = 366 * 8


class CronError(ValueError):
    pass


def _value(text: str, lo: int, names: list[str] | None, what: str) -> int:
    if names and text.upper()[:3] in names and not text.isdigit():
        return lo + names.index(text.upper()[:3])
    try:
        return int(text)
    except ValueError:
        raise CronError(f"invalid value {text!r} in {what}") from None


def _field(text: str, lo: int, hi: int, names: list[str] | None, what: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"empty item in {what}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _value(step_text, 0, None, what)
            if step <= 0:
                raise CronError(f"step must be positive in {what}")
        if base in ("*", "?"):
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, lo, names, what), _value(b, lo, names, what)
        else:
            start = _value(base, lo, names, what)
            end = hi if step_text else start
        if not (lo <= start <= hi and lo <= end <= hi) or start > end:
            raise CronError(f"{item!r} is out of range {lo}-{hi} for {what}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _crate_weekday(day: date) -> int:
    """Day of week numbered as the cron crate numbers it: Sunday 1 ... Saturday 7."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> "CronSchedule":
        text = _SHORTCUTS.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) not in (6, 7):
            raise CronError(f"expected 6 or 7 fields (seconds first), got {len(parts)}: {expression!r}")
        if len(parts) == 6:
            parts.append("*")
        sets = [_field(p, lo, hi, names, what) for p, (what, lo, hi, names) in zip(parts, _FIELDS)]
        return cls(expression, *sets)

    def _matches_day(self, day: date) -> bool:
        return (day.year in self.years and day.month in self.months and day.day in self.days
                and _crate_weekday(day) in self.weekdays)

    def _first_time(self, after: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        """The earliest (h, m, s) of a matching day at or after ``after`` (None: any)."""
        for h in sorted(self.hours):
            if after and h < after[0]:
                continue
            same_h = bool(after) and h == after[0]
            for m in sorted(self.minutes):
                if same_h and m < after[1]:
                    continue
                same_m = same_h and m == after[1]
                for s in sorted(self.seconds):
                    if same_m and s < after[2]:
                        continue
                    return h, m, s
        return None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching second strictly after ``moment`` (UTC), or None if none within
        ``SEARCH_DAYS``."""
        moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        bound: tuple[int, int, int] | None = (start.hour, start.minute, start.second)
        for _ in range(SEARCH_DAYS):
            if self._matches_day(day):
                found = self._first_time(bound)
                if found:
                    return datetime(day.year, day.month, day.day, *found, tzinfo=timezone.utc)
            day += timedelta(days=1)
            bound = None
            if day.year > 2099:
                return None
        return None
