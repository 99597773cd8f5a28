"""Trigger specifications (pure): what fires a trigger and which plugin function it calls.

The forms are InfluxDB 3's — ``table:<name>``, ``all_tables``, ``every:<duration>``,
``cron:<expr>``, ``request:<path>`` — plus influent's ``persist:<table>`` and
``persist:all_tables`` (fired by each persist event on ``influent.persisted``).

A trigger type is one :class:`TriggerKind` in :data:`KINDS`: its plugin function and its event
source (accepted batches, persist events, the clock, or an HTTP request), plus its form in
:func:`parse_spec`. The worker (``agents/triggers.py``) and the API (``query_api/routes/engine.py``)
act on the source, never on the kind's name, so a new trigger type fed by an existing source is
added here alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from processing_engine.cron import CronError, CronSchedule

SPEC_HELP = ("expect one of the following forms: 'table:<TABLE_NAME>', 'all_tables', "
             "'cron:<CRONTAB_EXPRESSION>', 'every:<DURATION>', 'request:<PATH>', "
             "'persist:<TABLE_NAME>' or 'persist:all_tables'")

#: Event sources: the worker consumes ACCEPTED batches or PERSISTED events, or follows the
#: CLOCK; HTTP triggers run in the query API on ``/api/v3/engine/<path>``.
ACCEPTED, PERSISTED, CLOCK, HTTP = "accepted", "persisted", "clock", "http"


@dataclass(frozen=True)
class TriggerKind:
    name: str
    function: str  # the plugin function it calls
    source: str    # ACCEPTED | PERSISTED | CLOCK | HTTP


WRITES, SCHEDULE, REQUEST, PERSIST = "writes", "schedule", "request", "persist"
KINDS: dict[str, TriggerKind] = {k.name: k for k in (
    TriggerKind(WRITES, "process_writes", ACCEPTED),
    TriggerKind(SCHEDULE, "process_scheduled_call", CLOCK),
    TriggerKind(REQUEST, "process_request", HTTP),
    TriggerKind(PERSIST, "process_persist", PERSISTED),
)}

NS = 1_000_000_000
_UNITS = {  # humantime's unit names -> nanoseconds
    **dict.fromkeys(("nsec", "ns"), 1),
    **dict.fromkeys(("usec", "us", "µs"), 1_000),
    **dict.fromkeys(("msec", "ms"), 1_000_000),
    **dict.fromkeys(("seconds", "second", "sec", "s"), NS),
    **dict.fromkeys(("minutes", "minute", "min", "m"), 60 * NS),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600 * NS),
    **dict.fromkeys(("days", "day", "d"), 86_400 * NS),
    **dict.fromkeys(("weeks", "week", "w"), 604_800 * NS),
    **dict.fromkeys(("months", "month", "M"), 2_630_016 * NS),  # 30.44 days
    **dict.fromkeys(("years", "year", "y"), 31_557_600 * NS),  # 365.25 days
}
_PIECE = re.compile(r"\s*(\d+)\s*([A-Za-zµ]+)")
MAX_EVERY_NS = 31_557_600 * NS


class SpecError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """A humantime duration (``10s``, ``5m``, ``1h 30min``) in nanoseconds."""
    total, pos, text = 0, 0, text.strip()
    if not text:
        raise SpecError("empty duration")
    while pos < len(text):
        m = _PIECE.match(text, pos)
        if not m or m.group(2) not in _UNITS:
            raise SpecError(f"invalid duration {text!r}")
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


@dataclass(frozen=True)
class TriggerSpec:
    text: str
    kind: str  # WRITES | SCHEDULE | REQUEST | PERSIST
    table: str | None = None  # None: all tables (WRITES, PERSIST)
    every_ns: int | None = None
    cron: CronSchedule | None = None
    path: str | None = None

    @property
    def function(self) -> str:
        return KINDS[self.kind].function

    @property
    def source(self) -> str:
        """What fires it: ACCEPTED, PERSISTED, CLOCK or HTTP."""
        return KINDS[self.kind].source

    def wants_table(self, table: str) -> bool:
        return self.table is None or self.table == table

    def next_fire(self, after: datetime) -> datetime | None:
        """The next scheduled call strictly after ``after``: ``every`` is aligned to multiples
        of the period since the epoch, so every worker computes the same instants."""
        if self.every_ns:
            ns = int(after.timestamp() * NS)
            nxt = (ns // self.every_ns + 1) * self.every_ns
            return datetime.fromtimestamp(nxt / NS, tz=timezone.utc)
        if self.cron:
            return self.cron.next_after(after)
        return None


def parse_spec(text: str) -> TriggerSpec:
    text = (text or "").strip()
    kind, sep, rest = text.partition(":")
    if text == "all_tables":
        return TriggerSpec(text, WRITES)
    if sep and kind == "table" and rest:
        return TriggerSpec(text, WRITES, table=rest)
    if sep and kind == "persist" and rest:
        return TriggerSpec(text, PERSIST, table=None if rest == "all_tables" else rest)
    if sep and kind == "every" and rest:
        ns = parse_duration(rest)
        if ns <= 0:
            raise SpecError("every: duration must be positive")
        if ns > MAX_EVERY_NS:
            raise SpecError("every: duration must be at most 1 year")
        return TriggerSpec(text, SCHEDULE, every_ns=ns)
    if sep and kind == "cron" and rest:
        try:
            return TriggerSpec(text, SCHEDULE, cron=CronSchedule.parse(rest))
        except CronError as exc:
            raise SpecError(f"invalid cron expression: {exc}") from exc
    if sep and kind == "request" and rest.strip("/"):
        return TriggerSpec(text, REQUEST, path=rest.strip("/"))
    raise SpecError(f"invalid trigger specification {text!r}: {SPEC_HELP}")
