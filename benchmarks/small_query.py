"""The fixed cost of a small InfluxQL query: a tight loop of one TSBS query type on kept-alive
connections, against influent's query API(s) and the peer (InfluxDB 1.x) over the same data.

    python -m benchmarks.small_query hold STATE.json     # start a stack, ingest, keep it up
    python -m benchmarks.small_query api STATE.json --tree DIR --port N   # another query API
    python -m benchmarks.small_query loop STATE.json --url U [--url U2] [--peer] -n 300

``hold`` starts benchmarks.run's stack (Kafka, Redis, worker, query API, influxd), ingests the
quick data set into both (part persisted, part buffered, as the queries phase has it), writes
the stack's settings and URLs to STATE.json and keeps everything running until interrupted.
``api`` starts one more query API process from another source tree (e.g. a worktree of the
base commit) on the same Redis and Kafka, so two versions answer over the same data. ``loop``
runs ``-n`` queries per URL, rotating the URLs per query (so a load change hits all alike), each
on its own kept-alive connection, checks that every URL answers byte-identically to the first,
and prints median, p10 and p90 per URL plus the load average.
"""
from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import httpx

from benchmarks import ingest, queries
from benchmarks.run import DB, QUICK, loadavg, start_stack, wait_persisted
from benchmarks.tsbs import START_NS, generate_lines


@click.group()
def main() -> None:
    """Tight loops of one small query type."""


@main.command()
@click.argument("state_file", type=click.Path(dir_okay=False))
def hold(state_file: str) -> None:
    """Start the stack, ingest the quick data into influent and the peer, keep it running."""
    plan = QUICK
    work = Path(tempfile.mkdtemp(prefix="influent-smallq-"))
    lines = list(generate_lines(plan.hosts, plan.hours))
    stack = start_stack(work, plan)
    try:
        messages = ingest.chunk_lines(lines, plan.lines_per_message)
        ingest.influent_ingest(stack.settings, stack.services, messages, DB, len(lines), len(lines))
        wait_persisted(stack.settings, DB, plan.partitions)
        batches = ingest.chunk_lines(lines, plan.peer_batch)
        ingest.peer_ingest(stack.peer, batches, DB, len(lines), len(lines))
        Path(state_file).write_text(json.dumps({
            "env": stack.settings.as_env(), "work": str(work), "api": stack.settings.http_url,
            "peer": stack.peer.url, "hosts": plan.hosts, "hours": plan.hours}, indent=1))
        print(f"ready: api {stack.settings.http_url}, peer {stack.peer.url}", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@main.command()
@click.argument("state_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--tree", required=True, type=click.Path(exists=True, file_okay=False),
              help="source tree to run the API from")
@click.option("--port", required=True, type=int)
def api(state_file: str, tree: str, port: int) -> None:
    """One more query API process (from ``--tree``) over the held stack; runs in the foreground."""
    state = json.loads(Path(state_file).read_text())
    env = dict(os.environ)
    env.update(state["env"])
    env["INFLUENT_HTTP_BIND"] = f"127.0.0.1:{port}"
    env["PYTHONPATH"] = str(Path(tree).resolve())
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "influent.cli", "api"], env=env,
                            cwd=str(Path(tree).resolve()))
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@main.command()
@click.argument("state_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--url", "urls", multiple=True, help="query API base URLs (default: the held one)")
@click.option("--peer/--no-peer", default=True, help="also the peer (InfluxDB 1.x)")
@click.option("-n", "iterations", default=300, show_default=True)
@click.option("--kind", default="single-groupby-1-1-1", show_default=True)
@click.option("--warmup", default=20, show_default=True)
def loop(state_file: str, urls: tuple[str, ...], peer: bool, iterations: int, kind: str,
         warmup: int) -> None:
    """Medians of ``kind`` per URL, on kept-alive connections, answers compared."""
    state = json.loads(Path(state_file).read_text())
    targets = list(urls) or [state["api"]]
    if peer:
        targets.append(state["peer"])
    gen = queries.DevopsQueries(state["hosts"], START_NS,
                                START_NS + int(state["hours"] * 3600e9))
    texts = [gen.generate(kind) for _ in range(iterations + warmup)]
    clients = [httpx.Client(timeout=60) for _ in targets]
    pids = [listening_pid(t) for t in targets]
    cpu0: list[float | None] = []
    times: list[list[float]] = [[] for _ in targets]
    differ = [0] * len(targets)
    load = loadavg()
    try:
        for i, q in enumerate(texts):
            bodies = []
            for j in range(len(targets)):
                k = (i + j) % len(targets)  # rotate who goes first
                t0 = time.perf_counter()
                r = clients[k].get(f"{targets[k]}/query", params={"db": DB, "q": q})
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                bodies.append((k, r.content))
                if i >= warmup:
                    times[k].append(elapsed)
                elif i == warmup - 1 and j == len(targets) - 1:
                    cpu0 = [process_cpu(p) for p in pids]
            bodies.sort()
            for k, body in bodies[1:]:
                if targets[k] != state.get("peer") and body != bodies[0][1]:
                    differ[k] += 1
    finally:
        for c in clients:
            c.close()
    cpu = [None if a is None or p is None else (process_cpu(p) - a) / iterations
           for p, a in zip(pids, cpu0 or [None] * len(pids))]
    print(f"{kind}: {iterations} queries per target, load average {load} -> {loadavg()}")
    for target, ts, bad, used in zip(targets, times, differ, cpu):
        qs = statistics.quantiles(ts, n=10)
        name = "peer" if target == state.get("peer") else target
        print(f"  {name:<28} median {statistics.median(ts) * 1000:7.2f} ms  p10 "
              f"{qs[0] * 1000:7.2f}  p90 {qs[-1] * 1000:7.2f}"
              + (f"  server CPU {used * 1000:6.2f} ms/query" if used is not None else "")
              + (f"  BODIES DIFFER from the first URL: {bad}" if bad else ""))


def listening_pid(url: str) -> int | None:
    """The process listening on the URL's port (``ss -ltnp``), for its CPU time."""
    port = url.rsplit(":", 1)[1].strip("/")
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its reaped children so far."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
