"""single-groupby-1-1-1 while ingest runs, on influent alone, with the query API profiled.

``python -m benchmarks.query_load_profile [--hosts 100 --hours 2 --seconds 10 --profile DIR]``
starts Kafka, Redis, one worker and the query API (no peer), loads ``hosts`` x ``hours`` of TSBS
cpu lines (Kafka messages of 5 000 lines), then runs the under-ingest measurement of
:mod:`benchmarks.query_load` (50 000 lines/s offered in messages of 5 000 lines, one client
running single-groupby-1-1-1 back to back) with py-spy sampling the API, and prints p50/p99,
the API's CPU seconds and the profile's busiest frames (:func:`ingest_sizes.summarize_profile`).
A shorter loop than ``benchmarks.run --phases ingest,query_load`` for comparing two versions
back to back; the figures of record come from ``make bench``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import ingest, ingest_sizes, query_load, tsbs
from benchmarks.peer import group_cpu_seconds
from benchmarks.queries import DevopsQueries
from benchmarks.tsbs import INTERVAL_NS, START_NS

DB = "load"


def run(hosts: int, hours: float, seconds: float, profile_dir: Path | None,
        rate: int = 50_000, lines_per_message: int = 5_000) -> dict:
    lines = list(tsbs.generate_lines(hosts, hours))
    # like make bench: each partition persists part of its rows during the load
    with ingest_sizes.bench_stack("query-load-profile-", "qlp.", persist_max_rows=max(
            lines_per_message, len(lines) // 8 // 2)) as (_, settings, stack):
        services = {name: stack[name] for name in ("worker", "api")}
        api = stack["api"]
        ingest.influent_ingest(settings, services, ingest.chunk_lines(lines, lines_per_message),
                               DB, len(lines), len(lines))
        end_ns = START_NS + int(hours * 3600 * 1_000_000_000)
        gen = DevopsQueries(hosts, START_NS, end_ns, seed=777)
        texts = [gen.generate(query_load.KIND) for _ in range(50)]
        fresh_hours = rate * seconds / hosts * INTERVAL_NS / 3_600_000_000_000
        fresh = list(tsbs.generate_lines(hosts, fresh_hours, seed=99, start_ns=end_ns))
        batches = ingest.chunk_lines(fresh, lines_per_message)

        def ask(client, q: str) -> None:
            client.get(f"{settings.http_url}/query",
                       params={"db": DB, "q": q}).raise_for_status()

        send, close = query_load._kafka_sender(settings, DB)
        spy = (ingest_sizes.start_profile(api.pid, profile_dir / "api-query-load.txt")
               if profile_dir else None)
        cpu0 = {name: group_cpu_seconds(s.pid) for name, s in services.items()}
        try:
            res = query_load._under_ingest(ask, texts, batches, rate / lines_per_message, send)
        finally:
            ingest_sizes.stop_profile(spy)
            close()
        res["cpu_s"] = {name: group_cpu_seconds(s.pid) - cpu0[name]
                        for name, s in services.items()}
        if spy is not None:
            res["api_profile_top"] = ingest_sizes.summarize_profile(
                profile_dir / "api-query-load.txt", top=25)
        return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", default="", help="folder for the API's py-spy profile")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    profile = Path(args.profile) if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    res = run(args.hosts, args.hours, args.seconds, profile)
    print(f"single-groupby-1-1-1 under ingest: {res['queries']} queries, p50 "
          f"{res['p50_s'] * 1000:.1f} ms, p99 {res['p99_s'] * 1000:.1f} ms; CPU s "
          f"{ {k: round(v, 2) for k, v in res['cpu_s'].items()} }", flush=True)
    for frame, share in res.get("api_profile_top", []):
        print(f"  {share:6.1%}  {frame}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
