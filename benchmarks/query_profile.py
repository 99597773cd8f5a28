"""Where a query's time goes, per TSBS query type: py-spy samples of the query API while one type
runs again and again, each sample put in one stage.

    python -m benchmarks.query_profile [--hosts 100 --hours 2 --iterations 40]

Starts the same stack as benchmarks.run (its ``start_stack``), ingests TSBS cpu-only data (part
persisted, part buffered), then for each query type attaches ``py-spy record --format raw`` to
the API process while the queries run and sorts every sample into a stage by the innermost
frame that names one (:data:`STAGES`, first match from the leaf up). Prints a Markdown table of
the share of samples per stage and the median latency (docs/benchmarks.md keeps it).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click
import httpx

from benchmarks import ingest, queries
from benchmarks.run import DB, QUICK, Plan, start_stack, wait_persisted
from benchmarks.tsbs import START_NS, generate_lines

#: (stage, substrings of a frame "function (file:line)"); the innermost frame that matches
#: any substring decides the sample's stage.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("encoding", ("encode_json", "query_json", "results.py", "_series_of", "formats.py")),
    ("parquet reads", ("read_file", "parquet", "file_rows", "footer")),
    ("dedup", ("deduplicate", "dedup.py", "assemble_table", "keep_matching", "overlap")),
    ("hot data", ("hot_data.py",)),
    ("catalog and snapshots", ("redis", "catalog.py", "snapshot_cache.py", "decode_batches",
                               "visibility", "table_state", "wire.py", "catalog_reads.py")),
    ("planning", ("plan_select", "parse_query", "parser.py", "lexer.py", "planner.py",
                  "plan_scan_limits", "sql_guard.py", "conditions.py")),
    ("execution", ("select.py", "fill.py", "expressions.py", "series_calls.py",
                   "to_arrow_table", "datafusion", "arrow_scan.py", "executor.py")),
    ("HTTP", ("uvicorn", "starlette", "fastapi", "h11", "httptools", "anyio", "routes/")),
)
ORDER = [s for s, _ in STAGES] + ["other"]


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def classify(raw: str) -> Counter:
    """Samples per stage from py-spy's raw output (``frame;frame;... count`` per line)."""
    counts: Counter = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit() and "process_" not in stack.split(";")[0]:
            counts[stage_of(stack)] += int(n)
    return counts


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``): unlike latency, it barely
    moves when other jobs share the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: CPU seconds per query of the API process in the last :func:`profile_type` loop, by type
CPU_PER_QUERY: dict[str, float] = {}


def profile_type(url: str, api_pid: int, texts: list[str], out: Path) -> tuple[Counter, float]:
    """Samples per stage and the median latency of ``texts`` run in a loop under py-spy (after
    one query not profiled: the hot data of new files is built by the first); the API's CPU
    time per query goes to :data:`CPU_PER_QUERY` (key: ``out``'s stem)."""
    with httpx.Client(timeout=600) as client:
        client.get(f"{url}/query", params={"db": DB, "q": texts[0]}).raise_for_status()
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                            str(api_pid), "--format", "raw", "--rate", "250", "--output",
                            str(out), "--nonblocking"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    latencies = []
    cpu0 = cpu_seconds(api_pid)
    with httpx.Client(timeout=600) as client:
        for q in texts:
            t0 = time.perf_counter()
            client.get(f"{url}/query", params={"db": DB, "q": q}).raise_for_status()
            latencies.append(time.perf_counter() - t0)
    CPU_PER_QUERY[out.stem] = (cpu_seconds(api_pid) - cpu0) / max(len(texts), 1)
    spy.send_signal(2)
    spy.wait(timeout=60)
    return classify(out.read_text() if out.exists() else ""), statistics.median(latencies)


def table(rows: dict[str, tuple[Counter, float]], cpu: dict[str, float] | None = None) -> str:
    """The Markdown table; with ``cpu`` (query type -> API CPU seconds per query) a column
    of CPU ms per query after the median."""
    cpu = cpu or {}
    head = "| query type | median ms | " + ("API CPU ms/query | " if cpu else "") + " | ".join(
        ORDER) + " |"
    lines = [head, "|" + "---|" * (len(ORDER) + 2 + bool(cpu))]
    for kind, (counts, median) in rows.items():
        total = sum(counts.values()) or 1
        cells = [f"{100 * counts[s] / total:.0f} %" for s in ORDER]
        used = f"{cpu[kind] * 1000:.1f} | " if kind in cpu else ("- | " if cpu else "")
        lines.append(f"| {kind} | {median * 1000:.1f} | {used}" + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_last_cache(url: str, api_pid: int, texts: list[str], out: Path
                    ) -> tuple[Counter, float]:
    """:func:`profile_type` of lastpoint answered from a last value cache on ``cpu`` (made
    and seeded first, deleted after; as benchmarks/lastpoint_cache.py does)."""
    name = "profile_lastpoint"
    with httpx.Client(timeout=600) as client:
        client.post(f"{url}/api/v3/configure/last_cache",
                    json={"db": DB, "table": "cpu", "name": name}).raise_for_status()
        client.get(f"{url}/api/v3/query_sql", params={  # waits for the seed
            "db": DB, "q": f"SELECT count(*) AS n FROM last_cache('cpu', '{name}')",
            "format": "json"}).raise_for_status()
    try:
        return profile_type(url, api_pid, texts, out)
    finally:
        with httpx.Client(timeout=600) as client:
            client.request("DELETE", f"{url}/api/v3/configure/last_cache",
                           params={"db": DB, "table": "cpu", "name": name})


@click.command()
@click.option("--hosts", default=QUICK.hosts, show_default=True)
@click.option("--hours", default=QUICK.hours, show_default=True)
@click.option("--iterations", default=40, show_default=True)
@click.option("--query-types", default=None, help="comma-separated subset of the TSBS types")
@click.option("--last-cache", is_flag=True, help="also lastpoint from a last value cache")
@click.option("--keep-raw", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep py-spy's raw samples per type in this directory")
def main(hosts: int, hours: float, iterations: int, query_types: str | None, last_cache: bool,
         keep_raw: Path | None) -> None:
    plan = Plan(**{**QUICK.__dict__, "hosts": hosts, "hours": hours})
    if query_types:
        plan = Plan(**{**plan.__dict__, "query_types": tuple(query_types.split(","))})
    work = Path(tempfile.mkdtemp(prefix="influent-profile-"))
    lines = list(generate_lines(plan.hosts, plan.hours))
    stack = start_stack(work, plan)
    try:
        messages = ingest.chunk_lines(lines, plan.lines_per_message)
        ingest.influent_ingest(stack.settings, stack.services, messages, DB, len(lines),
                               len(lines))
        wait_persisted(stack.settings, DB, plan.partitions)
        gen = queries.DevopsQueries(hosts, START_NS, START_NS + int(hours * 3600e9))
        rows: dict[str, tuple[Counter, float]] = {}
        cpu: dict[str, float] = {}
        for kind in plan.query_types:
            texts = [gen.generate(kind) for _ in range(iterations)]
            rows[kind] = profile_type(stack.settings.http_url, stack.api.pid, texts,
                                      work / f"{kind}.txt")
            cpu[kind] = CPU_PER_QUERY[kind]
            print(f"{kind}: {rows[kind][1] * 1000:.1f} ms, API CPU {cpu[kind] * 1000:.1f} ms "
                  "per query", flush=True)
        if last_cache:
            kind = "lastpoint (last value cache)"
            texts = [gen.generate("lastpoint") for _ in range(iterations)]
            rows[kind] = with_last_cache(stack.settings.http_url, stack.api.pid, texts,
                                         work / "lastpoint-cache.txt")
            cpu[kind] = CPU_PER_QUERY["lastpoint-cache"]
            print(f"{kind}: {rows[kind][1] * 1000:.1f} ms, API CPU {cpu[kind] * 1000:.1f} ms "
                  "per query", flush=True)
        if keep_raw is not None:
            keep_raw.mkdir(parents=True, exist_ok=True)
            for raw in work.glob("*.txt"):
                shutil.copy(raw, keep_raw / raw.name)
        print(table(rows, cpu))
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
