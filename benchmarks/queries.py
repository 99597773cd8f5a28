"""The TSBS devops query types, in InfluxQL as TSBS writes them for InfluxDB, on both systems.

Texts follow TSBS ``cmd/tsbs_generate_queries/databases/influx/devops.go`` (with the durations
of ``uses/devops/common.go``: double-groupby and high-cpu 12 h, cpu-max-all 8 h): random hosts
``host_<n>`` (distinct, uniform), random windows inside the data's time span with RFC3339
second-precision bounds, seeded so both systems and every run get the same queries. A window
longer than the data set (small runs) starts at the first point instead of failing as TSBS does.

Each query is sent to influent's ``/query`` (InfluxQL, v1 JSON) and to the peer's ``/query``,
alternating which goes first; the latency is request → full body read on a kept-alive
connection. The two bodies are compared as parsed JSON, each query getting the first of:
``identical`` (same values; 60 and 60.0 count as the same number, and 1.x's
``"partial": true`` on a series longer than its 10 000-row internal chunk is ignored: the
rows are all there), ``floats ~1e-12`` (floats equal to 1e-12 relative: a mean summed in
another order differs in the last bits), ``tie order`` (a raw query without GROUP BY tags, like high-cpu-all, returns rows of different hosts
at the same timestamp, whose order InfluxDB 1.x leaves to its storage merge: same rows, ties in
another order), ``MISMATCH`` (anything else: printed loudly, kept in the results) or ``ERROR``.
A query type's verdict is the worst of its queries.
"""
from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx

from benchmarks.peer import Peer

METRICS = ("usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
           "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice")
HOUR_S = 3600
DOUBLE_GROUPBY_S = 12 * HOUR_S
HIGH_CPU_S = 12 * HOUR_S
MAX_ALL_S = 8 * HOUR_S

QUERY_TYPES = ("single-groupby-1-1-1", "single-groupby-5-8-1", "cpu-max-all-8",
               "double-groupby-1", "double-groupby-all", "high-cpu-all", "lastpoint",
               "groupby-orderby-limit")


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DevopsQueries:
    """TSBS's influx devops generator over a data set of ``hosts`` hosts in [start, end)."""

    def __init__(self, hosts: int, start_ns: int, end_ns: int, seed: int = 321):
        self.hosts = hosts
        self.start_s = start_ns // 1_000_000_000
        self.end_s = -(-end_ns // 1_000_000_000)
        self.rng = random.Random(seed)

    # ---- TSBS helpers ---------------------------------------------------------------------
    def window(self, seconds: int) -> tuple[str, str]:
        upper = self.end_s - seconds
        start = self.start_s if upper <= self.start_s else self.rng.randrange(self.start_s, upper)
        return rfc3339(start), rfc3339(start + seconds)

    def host_where(self, n: int) -> str:
        picked: list[int] = []
        while len(picked) < n:
            x = self.rng.randrange(self.hosts)
            if x not in picked:
                picked.append(x)
        return "(" + " or ".join(f"hostname = 'host_{x}'" for x in picked) + ")"

    @staticmethod
    def aggs(agg: str, metrics) -> list[str]:
        return [f"{agg}({m})" for m in metrics]

    # ---- the query types ------------------------------------------------------------------
    def group_by_time(self, n_hosts: int, n_metrics: int, seconds: int) -> str:
        start, end = self.window(seconds)
        sel = ", ".join(self.aggs("max", METRICS[:n_metrics]))
        return (f"SELECT {sel} from cpu where {self.host_where(n_hosts)} and time >= '{start}' "
                f"and time < '{end}' group by time(1m)")

    def max_all_cpu(self, n_hosts: int) -> str:
        start, end = self.window(MAX_ALL_S)
        where = self.host_where(n_hosts)
        sel = ",".join(self.aggs("max", METRICS))
        return (f"SELECT {sel} from cpu where {where} and time >= '{start}' and time < '{end}' "
                f"group by time(1m)")

    def group_by_time_and_primary_tag(self, n_metrics: int) -> str:
        start, end = self.window(DOUBLE_GROUPBY_S)
        sel = ", ".join(self.aggs("mean", METRICS[:n_metrics]))
        return (f"SELECT {sel} from cpu where time >= '{start}' and time < '{end}' "
                f"group by time(1h),hostname")

    def high_cpu_for_hosts(self, n_hosts: int) -> str:
        start, end = self.window(HIGH_CPU_S)
        hosts = f"and {self.host_where(n_hosts)}" if n_hosts else ""
        return (f"SELECT * from cpu where usage_user > 90.0 {hosts} and time >= '{start}' "
                f"and time < '{end}'")

    def last_point_per_host(self) -> str:
        return 'SELECT * from cpu group by "hostname" order by time desc limit 1'

    def group_by_order_by_limit(self) -> str:
        _start, end = self.window(HOUR_S)
        return f"SELECT max(usage_user) from cpu WHERE time < '{end}' group by time(1m) limit 5"

    def generate(self, kind: str) -> str:
        makers: dict[str, Callable[[], str]] = {
            "single-groupby-1-1-1": lambda: self.group_by_time(1, 1, HOUR_S),
            "single-groupby-5-8-1": lambda: self.group_by_time(8, 5, HOUR_S),
            "cpu-max-all-8": lambda: self.max_all_cpu(8),
            "double-groupby-1": lambda: self.group_by_time_and_primary_tag(1),
            "double-groupby-all": lambda: self.group_by_time_and_primary_tag(len(METRICS)),
            "high-cpu-all": lambda: self.high_cpu_for_hosts(0),
            "lastpoint": self.last_point_per_host,
            "groupby-orderby-limit": self.group_by_order_by_limit,
        }
        return makers[kind]()


# ---- comparing answers ------------------------------------------------------------------------


REL_TOL = 1e-12


def normalise(value: Any) -> Any:
    """JSON numbers as floats (1.x prints 60 where a float formatter may print 60.0)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def merge_partial(body: Any) -> Any:
    """InfluxDB 1.x computes a non-chunked query in internal chunks of 10 000 rows: a series
    longer than that comes back marked ``"partial": true`` although every row is there (1.6
    merges the chunks but keeps the flag), and chunks of one series may come as consecutive
    entries. Join such entries and drop the flag; the rows are then compared as usual."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    results = []
    for result in body.get("results", []):
        result = dict(result)
        merged: list[dict] = []
        for series in result.get("series", []) or []:
            prev = merged[-1] if merged else None
            if (prev is not None and prev.pop("partial", False)
                    and all(prev.get(k) == series.get(k) for k in ("name", "tags", "columns"))):
                prev["values"] = prev.get("values", []) + series.get("values", [])
                continue
            merged.append(dict(series))
        for series in merged:
            series.pop("partial", None)
        if "series" in result:
            result["series"] = merged
        result.pop("partial", None)
        results.append(result)
    if "results" in body:
        out["results"] = results
    return out


def close(a: Any, b: Any) -> bool:
    """Deep equality with floats equal to ``REL_TOL`` (summation order changes the last bits
    of a mean; nothing else may differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def _sorted_rows(body: Any) -> Any:
    body = json.loads(json.dumps(body))
    for result in body.get("results", []):
        for series in result.get("series", []) or []:
            series["values"] = sorted(series.get("values", []), key=lambda r: json.dumps(r))
    return body


def first_difference(a: Any, b: Any, path: str = "") -> str:
    if type(a) is type(b) and isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'peer' if k not in a else 'influent'}"
            if not close(a[k], b[k]):
                return first_difference(a[k], b[k], f"{path}/{k}")
    if type(a) is type(b) and isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items in influent vs {len(b)} in peer"
        for i, (x, y) in enumerate(zip(a, b)):
            if not close(x, y):
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: influent {json.dumps(a)[:200]} vs peer {json.dumps(b)[:200]}"


#: Answer statuses, best first; a query type's verdict is the worst of its queries.
STATUSES = ("identical", "floats ~1e-12", "tie order", "MISMATCH", "ERROR")


def compare(influent_body: bytes, peer_body: bytes) -> tuple[str, str]:
    """(status, detail), status one of :data:`STATUSES`."""
    try:
        a = json.loads(influent_body)
    except ValueError:
        return "ERROR", f"influent answered non-JSON: {influent_body[:300]!r}"
    b = json.loads(peer_body)
    errors = [r.get("error") for r in a.get("results", []) if isinstance(r, dict) and r.get("error")]
    peer_errors = [r.get("error") for r in b.get("results", [])
                   if isinstance(r, dict) and r.get("error")]
    if ("error" in a or errors) and not peer_errors:
        return "ERROR", f"influent error: {a.get('error') or errors[0]}"
    if a == b:
        return "identical", ""
    na, nb = normalise(merge_partial(a)), normalise(merge_partial(b))
    if na == nb:
        return "identical", "same values (number formatting or 1.x's partial chunks differ)"
    if close(na, nb):
        return "floats ~1e-12", "floats equal to 1e-12 relative (summation order)"
    if close(_sorted_rows(na), _sorted_rows(nb)):
        return "tie order", "same rows; rows with equal timestamps in another order"
    return "MISMATCH", first_difference(na, nb)


def result_rows(body: bytes) -> int:
    try:
        data = json.loads(body)
        return sum(len(s.get("values", [])) for r in data.get("results", [])
                   for s in r.get("series", []) or [])
    except (ValueError, AttributeError):
        return -1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_queries(influent_url: str, peer: Peer, db: str, hosts: int, start_ns: int, end_ns: int,
                iterations: int, seed: int = 321, types=QUERY_TYPES,
                log: Callable[[str], None] = print) -> dict:
    """Run ``iterations`` queries of every type on both; latencies and answer comparison."""
    gen = DevopsQueries(hosts, start_ns, end_ns, seed)
    out: dict[str, dict] = {}
    with httpx.Client(timeout=600) as client:
        def ask_influent(q: str) -> tuple[float, int, bytes]:
            t0 = time.perf_counter()
            resp = client.get(f"{influent_url}/query", params={"db": db, "q": q})
            body = resp.content
            return time.perf_counter() - t0, resp.status_code, body

        def ask_peer(q: str) -> tuple[float, int, bytes]:
            t0 = time.perf_counter()
            status, body = peer.query_raw(q, db=db)
            return time.perf_counter() - t0, status, body

        for kind in types:
            texts = [gen.generate(kind) for _ in range(iterations)]
            ask_influent(texts[0])  # warm-up, both sides, not timed
            ask_peer(texts[0])
            lat_i: list[float] = []
            lat_p: list[float] = []
            statuses: dict[str, int] = {}
            problems: list[dict] = []
            rows = []
            for i, q in enumerate(texts):
                if i % 2:
                    tp, sp, bp = ask_peer(q)
                    ti, si, bi = ask_influent(q)
                else:
                    ti, si, bi = ask_influent(q)
                    tp, sp, bp = ask_peer(q)
                lat_i.append(ti)
                lat_p.append(tp)
                status, detail = compare(bi, bp) if si == 200 else (
                    "ERROR", f"influent HTTP {si}: {bi[:300]!r}")
                if sp != 200:
                    status, detail = "ERROR", f"peer HTTP {sp}: {bp[:300]!r}"
                statuses[status] = statuses.get(status, 0) + 1
                rows.append(result_rows(bp))
                if status not in ("identical", "floats ~1e-12") and len(problems) < 3:
                    problems.append({"query": q, "status": status, "detail": detail,
                                     "influent_body": bi[:2000].decode("utf-8", "replace"),
                                     "peer_body": bp[:2000].decode("utf-8", "replace")})
                    if status in ("MISMATCH", "ERROR"):
                        log(f"!!! {kind}: {status}: {detail}\n    query: {q}")
            verdict = max(statuses, key=STATUSES.index)
            out[kind] = {
                "iterations": iterations, "example": texts[0],
                "influent_median_s": statistics.median(lat_i),
                "influent_p95_s": percentile(lat_i, 0.95),
                "peer_median_s": statistics.median(lat_p), "peer_p95_s": percentile(lat_p, 0.95),
                "ratio_median": statistics.median(lat_i) / statistics.median(lat_p),
                "result_rows_median": statistics.median(rows),
                "answers": verdict, "answer_counts": statuses, "problems": problems,
            }
            r = out[kind]
            log(f"  {kind:<22} influent {r['influent_median_s'] * 1000:8.1f} ms  "
                f"peer {r['peer_median_s'] * 1000:8.1f} ms  x{r['ratio_median']:.2f}  {verdict}")
    return out
