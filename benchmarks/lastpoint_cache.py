"""TSBS lastpoint with a Last Value Cache vs without one vs the peer, side by side in one run.

The query is TSBS's (``SELECT * from cpu group by "hostname" order by time desc limit 1``).
First it runs on influent with no cache and on the peer; then a last cache is created on
``cpu`` (InfluxDB 3's ``POST /api/v3/configure/last_cache``, keyed on the table's tags) and,
once it is seeded, the query runs again on influent and the peer, alternating which goes first.
``from_cache`` says whether the cached run read no table rows (influent's
``influent_query_rows_scanned`` counter did not move); every answer is compared with the
peer's. The cache is deleted at the end so later phases see the usual engine.
"""
from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

import httpx

from benchmarks.peer import Peer
from benchmarks.queries import STATUSES, compare, percentile

QUERY = 'SELECT * from cpu group by "hostname" order by time desc limit 1'
CACHE = "bench_lastpoint"


def _rows_scanned(client: httpx.Client, url: str) -> float:
    found = re.search(r"^influent_query_rows_scanned_total (\S+)$",
                      client.get(f"{url}/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _timed_pairs(client: httpx.Client, url: str, peer: Peer, db: str, iterations: int
                 ) -> tuple[list[float], list[float], dict[str, int]]:
    lat_i, lat_p, verdicts = [], [], {}
    for i in range(iterations):
        def ours() -> tuple[float, bytes]:
            t0 = time.perf_counter()
            body = client.get(f"{url}/query", params={"db": db, "q": QUERY}).content
            return time.perf_counter() - t0, body

        def theirs() -> tuple[float, bytes]:
            t0 = time.perf_counter()
            _, body = peer.query_raw(QUERY, db=db)
            return time.perf_counter() - t0, body

        if i % 2:
            (tp, bp), (ti, bi) = theirs(), ours()
        else:
            (ti, bi), (tp, bp) = ours(), theirs()
        lat_i.append(ti)
        lat_p.append(tp)
        status, _ = compare(bi, bp)
        verdicts[status] = verdicts.get(status, 0) + 1
    return lat_i, lat_p, verdicts


def measure(url: str, peer: Peer, db: str, iterations: int,
            log: Callable[[str], None] = print) -> dict:
    with httpx.Client(timeout=600) as client:
        client.get(f"{url}/query", params={"db": db, "q": QUERY})  # warm-up, not timed
        plain, peer_plain, v_plain = _timed_pairs(client, url, peer, db, iterations)
        started = time.perf_counter()
        made = client.post(f"{url}/api/v3/configure/last_cache",
                           json={"db": db, "table": "cpu", "name": CACHE})
        if made.status_code != 201:
            return {"error": f"creating the cache: HTTP {made.status_code} {made.text[:300]}"}
        seeded = client.get(f"{url}/api/v3/query_sql", params={  # waits for the seed
            "db": db, "q": f"SELECT count(*) AS n FROM last_cache('cpu', '{CACHE}')",
            "format": "json"}).json()
        seed_s = time.perf_counter() - started
        before = _rows_scanned(client, url)
        client.get(f"{url}/query", params={"db": db, "q": QUERY})  # warm-up, not timed
        from_cache = _rows_scanned(client, url) == before
        cached, peer_cached, v_cached = _timed_pairs(client, url, peer, db, iterations)
        client.request("DELETE", f"{url}/api/v3/configure/last_cache",
                       params={"db": db, "table": "cpu", "name": CACHE})
    verdicts = {k: v_plain.get(k, 0) + v_cached.get(k, 0) for k in {*v_plain, *v_cached}}
    out = {
        "query": QUERY, "iterations": iterations, "cache_rows": seeded[0]["n"] if seeded else 0,
        "seed_s": seed_s, "from_cache": from_cache,
        "without_cache_median_s": statistics.median(plain),
        "with_cache_median_s": statistics.median(cached),
        "with_cache_p95_s": percentile(cached, 0.95),
        "peer_median_s": statistics.median(peer_plain + peer_cached),
        "answers": max(verdicts, key=STATUSES.index), "answer_counts": verdicts,
    }
    log(f"  lastpoint: without cache {out['without_cache_median_s'] * 1000:.1f} ms, with a last "
        f"cache {out['with_cache_median_s'] * 1000:.1f} ms (from_cache={from_cache}, seeded "
        f"{out['cache_rows']} rows in {seed_s:.1f} s), peer {out['peer_median_s'] * 1000:.1f} ms; "
        f"{out['answers']}")
    return out
