"""Reading an InfluxDB 1.x database over its HTTP API, measurement by measurement and time
window by time window, as Arrow tables that render to exact line protocol.

Field types come from ``SHOW FIELD KEYS`` (1.x's JSON writes the float 1.0 as ``1``, so the
values alone cannot tell an integer from a float); tags are the series' tags of a
``GROUP BY *`` query. Responses are read chunked (``chunked=true``), so a window never has to
fit in one JSON document.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pyarrow as pa

from topics.line_protocol.render import render_text

#: SHOW FIELD KEYS type -> line protocol field type and Arrow type
FIELD_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "float": ("float", pa.float64()),
    "integer": ("integer", pa.int64()),
    "unsigned": ("uinteger", pa.uint64()),
    "string": ("string", pa.string()),
    "boolean": ("boolean", pa.bool_()),
}
CHUNK_ROWS = 10_000


class SourceError(RuntimeError):
    """The 1.x server refused a query or answered something unreadable."""


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Measurement:
    name: str
    fields: dict[str, str]  # field -> line protocol type

    @property
    def columns(self) -> dict[str, str]:
        return dict(self.fields)


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in nanoseconds."""
    start: int
    end: int


def windows(first: int, last: int, size: int) -> list[Window]:
    """Windows of ``size`` ns aligned to multiples of ``size`` covering ``[first, last]``, so
    the same window has the same bounds in every run (its checkpoint key)."""
    start = first - first % size
    out = []
    while start <= last:
        out.append(Window(start, start + size))
        start += size
    return out


class InfluxDB1Source:
    """One database (and retention policy) of a running InfluxDB 1.x."""

    def __init__(self, url: str, db: str, rp: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 300.0) -> None:
        self.db = db
        self.rp = rp
        auth = (username, password or "") if username else None
        self.client = httpx.Client(base_url=url.rstrip("/"), auth=auth, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _from(self, measurement: str) -> str:
        if self.rp:
            return f"{quote_ident(self.db)}.{quote_ident(self.rp)}.{quote_ident(measurement)}"
        return quote_ident(measurement)  # the request's db, its default policy

    def _query(self, q: str) -> list[dict]:
        resp = self.client.get("/query", params={"db": self.db, "q": q, "epoch": "ns"})
        if resp.status_code != 200:
            raise SourceError(f"{q!r}: HTTP {resp.status_code}: {resp.text.strip()[:500]}")
        result = orjson.loads(resp.content)["results"][0]
        if "error" in result:
            raise SourceError(f"{q!r}: {result['error']}")
        return result.get("series") or []

    def default_rp(self) -> str | None:
        for series in self._query(f"SHOW RETENTION POLICIES ON {quote_ident(self.db)}"):
            cols = series["columns"]
            for row in series["values"]:
                rec = dict(zip(cols, row))
                if rec.get("default"):
                    return rec["name"]
        return None

    def measurements(self) -> list[str]:
        return sorted(row[0] for s in self._query("SHOW MEASUREMENTS") for row in s["values"])

    def measurement(self, name: str) -> Measurement:
        """Field types of ``name``; a field 1.x holds with two types keeps the first listed."""
        fields: dict[str, str] = {}
        for series in self._query(f"SHOW FIELD KEYS FROM {self._from(name)}"):
            for key, kind in series["values"]:
                if kind not in FIELD_TYPES:
                    raise SourceError(f"{name}.{key}: unknown field type {kind!r}")
                fields.setdefault(key, FIELD_TYPES[kind][0])
        return Measurement(name, fields)

    def time_bounds(self, name: str, start: int | None, end: int | None) -> tuple[int, int] | None:
        """First and last timestamp of ``name`` within ``[start, end)``; None when empty."""
        cond = _time_condition(start, end)
        bounds = []
        for order in ("ASC", "DESC"):
            series = self._query(f"SELECT * FROM {self._from(name)}{cond} ORDER BY time {order} LIMIT 1")
            if not series:
                return None
            bounds.append(series[0]["values"][0][0])
        return bounds[0], bounds[1]

    def read_window(self, m: Measurement, window: Window) -> Iterator[tuple[int, bytes]]:
        """The points of one window as (rows, line protocol), one per series of each chunk."""
        q = (f"SELECT * FROM {self._from(m.name)}{_time_condition(window.start, window.end)} "
             f"GROUP BY *")
        params = {"db": self.db, "q": q, "epoch": "ns", "chunked": "true",
                  "chunk_size": str(CHUNK_ROWS)}
        with self.client.stream("GET", "/query", params=params) as resp:
            if resp.status_code != 200:
                resp.read()
                raise SourceError(f"{q!r}: HTTP {resp.status_code}: {resp.text.strip()[:500]}")
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                result = orjson.loads(line)["results"][0]
                if "error" in result:
                    raise SourceError(f"{q!r}: {result['error']}")
                for series in result.get("series") or []:
                    table = series_table(m, series)
                    yield table.num_rows, table_lines(m, table, list(series.get("tags") or {}))


def series_table(m: Measurement, series: dict) -> pa.Table:
    """One series of a ``GROUP BY *`` answer as an Arrow table typed by the field keys."""
    columns = series["columns"]
    values = series["values"]
    rows = len(values)
    data: dict[str, pa.Array] = {}
    for tag, value in sorted((series.get("tags") or {}).items()):
        data[tag] = pa.repeat(pa.scalar(value or "", pa.string()), rows)
    by_column = list(zip(*values)) if values else [() for _ in columns]
    for name, column in zip(columns, by_column):
        if name == "time":
            data["time"] = pa.array(column, pa.int64())
            continue
        kind = m.fields.get(name, "float")
        arrow_type = next(t for k, t in FIELD_TYPES.values() if k == kind)
        try:
            data[name] = pa.array(column, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SourceError(f"{m.name}.{name}: values do not fit the field type {kind} "
                              f"(1.x holds this field with more than one type?): {exc}") from None
    return pa.table(data)


def table_lines(m: Measurement, table: pa.Table, tags: list[str]) -> bytes:
    """The rows as line protocol (nanosecond timestamps)."""
    kinds = {t: "tag" for t in tags}
    kinds.update(m.columns)
    return render_text(m.name, table, kinds)


def _time_condition(start: int | None, end: int | None) -> str:
    parts = []
    if start is not None:
        parts.append(f"time >= {start}")
    if end is not None:
        parts.append(f"time < {end}")
    return (" WHERE " + " AND ".join(parts)) if parts else ""
