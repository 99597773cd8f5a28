"""The closing report of a migration or import: rows per measurement on both sides.

The target side is counted through the query API (``SELECT count(*)``, deduplicated rows),
after waiting for the worker to catch up with what was sent, up to a time limit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import orjson

from influent.config import Settings


@dataclass(frozen=True)
class CountRow:
    database: str
    measurement: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


def sql_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def target_count(client: httpx.Client, settings: Settings, db: str, measurement: str,
                 start: int | None = None, end: int | None = None) -> int:
    """Rows of ``measurement`` in ``db`` visible to queries (0 when it does not exist)."""
    cond = []
    if start is not None:
        cond.append(f"time >= to_timestamp_nanos({start})")
    if end is not None:
        cond.append(f"time < to_timestamp_nanos({end})")
    where = (" WHERE " + " AND ".join(cond)) if cond else ""
    q = f"SELECT count(*) AS n FROM {sql_quote(measurement)}{where}"
    resp = client.get(f"{settings.http_url}/api/v3/query_sql",
                      params={"db": db, "q": q, "format": "json"})
    if resp.status_code in (400, 404):
        return 0
    resp.raise_for_status()
    rows = orjson.loads(resp.content)
    return int(rows[0]["n"]) if rows else 0


def compare_counts(settings: Settings, source: dict[tuple[str, str], int], timeout: float,
                   start: int | None = None, end: int | None = None) -> list[CountRow]:
    """Count every (database, measurement) on the target, polling until all match the
    source or ``timeout`` seconds pass; the last counts either way."""
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=60, headers=headers) as client:
        while True:
            rows = [CountRow(db, m, n, target_count(client, settings, db, m, start, end))
                    for (db, m), n in sorted(source.items())]
            if all(r.ok for r in rows) or time.monotonic() >= deadline:
                return rows
            time.sleep(1.0)


def render_report(rows: list[CountRow]) -> str:
    head = ("database", "measurement", "source rows", "influent rows", "")
    body = [(r.database, r.measurement, str(r.source), str(r.target),
             "ok" if r.ok else "MISMATCH") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    return "\n".join(lines)
