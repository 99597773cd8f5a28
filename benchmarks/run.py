"""influent against a peer (InfluxDB 1.x), side by side, in one run.

    python -m benchmarks.run            # full run (make bench): 200 hosts x 16 h, about 13-16 min
    python -m benchmarks.run --quick    # small data (make bench-quick), about 1.5 minutes

Starts its own services on free loopback ports with all state in a temp dir (the project's dev
stack code: a KRaft Kafka broker, Redis, one Faust worker, the query API) and a throw-away
``influxd`` (benchmarks/peer.py), then measures, each figure as influent / peer:

1. ingest: TSBS cpu-only LP, in messages of 1 000-5 000 lines to Kafka vs 5 000-line HTTP
   batches to the peer (lines/s end to end until queryable, CPU s per million lines of the
   whole system, bytes written after the writes topic per input byte), and again with 1- and
   10-line messages, the peer getting requests of as many lines (benchmarks.ingest_sizes);
2. storage: Parquet bytes per row (benchmarks.storage, and the files persisted in step 1) vs
   the peer's compacted TSM files;
3. queries: the eight TSBS devops query types in InfluxQL on both ``/query`` endpoints, over
   data part persisted (Parquet) and part buffered in influent; latencies and equal answers;
   then (benchmarks.query_load) single-groupby-1-1-1 p50/p99 during 50 000 lines/s of ingest
   and queries/s from 8 concurrent clients;
4. freshness: produce -> visible under a steady load of 50-line messages, one of one-line
   messages (2 000/s), and a light one;
5. recovery: worker start -> ready with N buffered rows (benchmarks.recovery) vs influxd
   start -> ready with the same rows in its WAL;
6. compaction: the same data written with a persist threshold of one small message (hundreds
   of files), then compacted by a worker (benchmarks.compaction): files, object-store bytes,
   query medians and answers before/after, and bytes per row beside the peer's TSM.

Writes benchmarks/results/latest.json (also as quick.json / full.json) and ratios.png, and prints
the table (benchmarks/report.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import click
import redis

from benchmarks import compaction as compaction_bench
from benchmarks import freshness, ingest, ingest_sizes, lastpoint_cache, queries, query_load, report
from benchmarks import recovery as recovery_bench
from benchmarks import storage as storage_bench
from benchmarks.peer import Peer, influxd_version
from benchmarks.tsbs import INTERVAL_NS, START_NS, generate_lines, generate_messages
from influent import devstack
from influent.config import PROJECT_ROOT, Settings

SESSION_TIMEOUT_S = 10.0  # agents/app.py broker_session_timeout
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DB = "bench"


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    name: str
    hosts: int
    hours: float
    lines_per_message: int       # influent messages (Kafka)
    peer_batch: int              # peer /write batches
    peer_writers: int
    query_iterations: int
    fresh_rate: float            # messages/s of the steady load
    fresh_lines: int             # lines per load message
    fresh_duration: float
    light_rate: float            # the light load (0 = skip)
    probe_every: float
    recovery_rows: int
    recovery_stores: tuple[str, ...]
    clean_recovery: bool         # also benchmarks.recovery.measure_store (clean stop)
    partitions: int = 8
    #: (lines per message / request, lines) runs beside the main one (benchmarks.ingest_sizes)
    size_runs: tuple[tuple[int, int], ...] = ((1, 2_000), (10, 10_000))
    single_line_rate: float = 2000  # messages/s of the one-line freshness load (0 = skip)
    query_types: tuple[str, ...] = queries.QUERY_TYPES
    persisted_fraction: float = 0.6  # of each partition's rows, persisted during ingest
    compaction_files: int = 300      # L0 files the compaction phase starts from (about)
    load_seconds: float = 10.0       # benchmarks.query_load, each of its measurements

    @property
    def lines(self) -> int:
        return int(self.hosts * self.hours * 3600 * 1_000_000_000 // INTERVAL_NS)

    @property
    def persist_max_rows(self) -> int:
        """So that each source partition persists one file of about ``persisted_fraction`` of
        its rows during the ingest and keeps the rest buffered."""
        messages = math.ceil(self.lines / self.lines_per_message)
        per_partition = math.ceil(messages / self.partitions)
        return max(1, int(per_partition * self.persisted_fraction)) * self.lines_per_message


QUICK = Plan(name="quick", hosts=100, hours=2, lines_per_message=2000, peer_batch=5000,
             peer_writers=4, query_iterations=3, fresh_rate=200,
             fresh_lines=50, fresh_duration=4, light_rate=20, probe_every=0.1,
             recovery_rows=100_000, recovery_stores=("rocksdb",), clean_recovery=False,
             load_seconds=5.0)
FULL = Plan(name="full", hosts=200, hours=16, lines_per_message=5000, peer_batch=5000,
            peer_writers=4, size_runs=((1, 50_000), (10, 200_000)), query_iterations=10,
            fresh_rate=200, fresh_lines=50, fresh_duration=20, light_rate=20, probe_every=0.2,
            recovery_rows=1_000_000, recovery_stores=("rocksdb", "memory"), clean_recovery=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> float | None:
    """1-minute load average (other work on the machine shows up here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---- machine ---------------------------------------------------------------------------------


def machine_info() -> dict:
    info: dict = {"nproc": os.cpu_count(), "platform": platform.platform(),
                  "python": platform.python_version()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        models = [line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        info["cpu_model"] = models[0] if models else platform.processor()
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    info["peer"] = influxd_version()
    info["kafka"] = devstack.KAFKA_VERSION
    return info


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---- the services ----------------------------------------------------------------------------


@dataclass
class Stack:
    work: Path
    settings: Settings
    kafka: devstack.Service
    redis: devstack.Service
    peer: Peer
    worker: devstack.Service | None = None
    api: devstack.Service | None = None
    extra: list = field(default_factory=list)

    @property
    def services(self) -> dict[str, devstack.Service]:
        return {"worker": self.worker, "kafka": self.kafka, "redis": self.redis, "api": self.api}

    def stop(self) -> None:
        for service in (self.api, self.worker):
            if service is not None:
                devstack.stop(service, timeout=120)
        self.peer.stop()
        devstack.stop(self.redis)
        devstack.stop(self.kafka, timeout=60)


def start_stack(work: Path, plan: Plan) -> Stack:
    logs = work / "logs"
    kafka_port, controller, redis_port = devstack.free_ports(3)
    kafka = devstack.launch_kafka(work / "kafka", logs, kafka_port, controller,
                                  die_with_parent=True)
    redis_svc = devstack.launch_redis(work / "redis", logs, redis_port, die_with_parent=True)
    peer = Peer.start(work / "peer")
    devstack.wait_ready(redis_svc, 30)
    devstack.wait_ready(kafka, 120)
    settings = Settings(
        state_dir=work / "influent", kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0", topic_prefix="bench.",
        partitions=plan.partitions, http_bind=f"127.0.0.1:{devstack.free_port()}",
        worker_web_port=devstack.free_port(), persist_max_rows=plan.persist_max_rows,
        persist_max_bytes=2**40, persist_max_age=24 * 3600.0, log_level="info")
    stack = Stack(work=work, settings=settings, kafka=kafka, redis=redis_svc, peer=peer)
    stack.worker = devstack.launch_worker(settings, logs, die_with_parent=True)
    stack.api = devstack.launch_api(settings, logs, die_with_parent=True)
    devstack.wait_ready(stack.worker, 180)
    devstack.wait_ready(stack.api, 60)
    return stack


# ---- phases ----------------------------------------------------------------------------------


def catalog_state(settings: Settings, db: str, table: str = "cpu") -> dict:
    """Parquet files and buffered snapshots of one table, from the catalog in Redis."""
    r = redis.Redis.from_url(settings.redis_url)
    ns = settings.app_id
    try:
        files = [json.loads(v) for v in r.hvals(f"{ns}:db:{db}:t:{table}:files")]
        snapshots = r.hlen(f"{ns}:db:{db}:t:{table}:buf")
    finally:
        r.close()
    return {"files": len(files), "persisted_rows": sum(f["rows"] for f in files),
            "parquet_bytes": sum(f["size"] for f in files), "buffer_snapshots": snapshots}


def wait_persisted(settings: Settings, db: str, files: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    state = catalog_state(settings, db)
    while state["files"] < files and time.monotonic() < deadline:
        time.sleep(0.5)
        state = catalog_state(settings, db)
    return state


def wait_peer_compacted(peer: Peer, db: str, timeout: float = 180.0) -> dict:
    """Until the WAL of ``db`` is empty and the TSM files stop changing (cold snapshot and
    full compaction, see peer.PROFILES)."""
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        sizes = peer.data_bytes(db)
        tsm = [(p.name, p.stat().st_size) for p in peer.tsm_files(db)]
        state = (sizes["wal"] < 1024, tuple(tsm))
        if state != last:
            last, stable_since = state, time.monotonic()
        elif state[0] and tsm and time.monotonic() - stable_since > 6:
            break
        time.sleep(0.5)
    tsm_bytes = sum(p.stat().st_size for p in peer.tsm_files(db))
    sizes = peer.data_bytes(db)
    return {"tsm_bytes": tsm_bytes, "tsm_files": len(peer.tsm_files(db)),
            "data_dir_bytes": sizes["data"], "wal_bytes": sizes["wal"],
            "compacted": bool(last and last[0])}


def phase_ingest(stack: Stack, plan: Plan, lines: list[str]) -> dict:
    messages = ingest.chunk_lines(lines, plan.lines_per_message)
    batches = ingest.chunk_lines(lines, plan.peer_batch)
    n = len(lines)
    log(f"ingest: {n:,} lines, influent {len(messages)} Kafka messages of "
        f"{plan.lines_per_message}, peer {len(batches)} /write batches of {plan.peer_batch} "
        f"({plan.peer_writers} writers)")
    written = ingest_sizes.WrittenBytes(stack.work / "kafka", "bench", stack.settings.redis_url)
    inf = ingest.influent_ingest(stack.settings, stack.services, messages, DB, n, n)
    inf.update(written.per_input_byte(inf["bytes"]))
    log(f"  influent {inf['lines_per_s']:,.0f} lines/s ({inf['seconds']:.1f} s), worker "
        f"{inf['worker_cpu_s_per_m_lines']:.1f} CPU s/M lines")
    peer = ingest.peer_ingest(stack.peer, batches, DB, n, n, writers=plan.peer_writers)
    log(f"  peer     {peer['lines_per_s']:,.0f} lines/s ({peer['seconds']:.1f} s), influxd "
        f"{peer['cpu_s_per_m_lines']:.1f} CPU s/M lines")
    out = {"batched": {"influent": inf, "peer": peer,
                       "lines_per_message": plan.lines_per_message,
                       "peer_batch": plan.peer_batch}}
    runs = [(size, min(count, n)) for size, count in plan.size_runs]
    log("ingest by message size (the peer gets the same lines per /write): "
        + ", ".join(f"{size}-line x {count:,}" for size, count in runs))
    out["sizes"] = ingest_sizes.beside_peer(stack.settings, stack.services, stack.peer,
                                            stack.work / "kafka", lines, runs, db=DB + "s",
                                            writers=plan.peer_writers)
    return out


def phase_storage(stack: Stack, plan: Plan) -> dict:
    log("storage: Parquet (benchmarks.storage over the same data) vs the peer's TSM")
    parquet = storage_bench.measure(plan.hosts, plan.hours)
    persisted = catalog_state(stack.settings, DB)
    peer = wait_peer_compacted(stack.peer, DB)
    rows = parquet["rows"]
    compacted = storage_bench.measure_compacted(plan.hosts, plan.hours)
    out = {"influent": parquet, "influent_persisted_during_ingest": persisted,
           "influent_compacted": compacted,
           "peer": {**peer, "rows": rows, "bytes_per_row": peer["tsm_bytes"] / rows,
                    "lp_ratio": parquet["lp_bytes"] / peer["tsm_bytes"] if peer["tsm_bytes"]
                    else None}}
    if persisted["persisted_rows"]:
        persisted["bytes_per_row"] = persisted["parquet_bytes"] / persisted["persisted_rows"]
    log(f"  parquet {parquet['bytes_per_row']:.2f} B/row (1/{parquet['ratio']:.1f} of LP); "
        f"peer TSM {out['peer']['bytes_per_row']:.2f} B/row "
        f"({peer['tsm_files']} files, compacted={peer['compacted']})")
    return out


def phase_queries(stack: Stack, plan: Plan) -> dict:
    state = catalog_state(stack.settings, DB)
    total = plan.lines
    state["buffered_rows"] = total - state["persisted_rows"]
    log(f"queries: {plan.query_iterations} per type; influent data: {state['persisted_rows']:,} "
        f"rows in {state['files']} Parquet files, {state['buffered_rows']:,} buffered "
        f"({state['buffer_snapshots']} snapshots)")
    end_ns = START_NS + int(plan.hours * 3600 * 1_000_000_000)
    results = queries.run_queries(stack.settings.http_url, stack.peer, DB, plan.hosts, START_NS,
                                  end_ns, plan.query_iterations, types=plan.query_types, log=log)
    out = {"data": state, "types": results}
    if "lastpoint" in plan.query_types:  # the same query with a last value cache
        out["lastpoint_cache"] = lastpoint_cache.measure(stack.settings.http_url, stack.peer, DB,
                                                         plan.query_iterations, log=log)
    return out


def phase_query_load(stack: Stack, plan: Plan) -> dict:
    log(f"query load: {query_load.KIND} under 50 000 lines/s of ingest, then 8 clients "
        f"({plan.load_seconds:g} s each)")
    end_ns = START_NS + int(plan.hours * 3600 * 1_000_000_000)
    r = query_load.measure(stack.settings, stack.peer, DB, plan.hosts, START_NS, end_ns,
                           plan.load_seconds)
    for side in ("influent", "peer"):
        u, c = r[side]["under_ingest"], r[side]["concurrent"]
        log(f"  {side:<8} p50 {u['p50_s'] * 1000:.1f} ms  p99 {u['p99_s'] * 1000:.1f} ms "
            f"({u['offered_lines_per_s']:,.0f} lines/s offered); {c['qps']:.1f} queries/s")
    return r


def phase_freshness(stack: Stack, plan: Plan) -> dict:
    out = {}
    loads = [("steady", plan.fresh_rate, plan.fresh_lines)]
    if plan.single_line_rate:
        loads.append(("one_line", plan.single_line_rate, 1))
    if plan.light_rate:
        loads.append(("light", plan.light_rate, plan.fresh_lines))
    for name, rate, lines in loads:
        log(f"freshness ({name}): {rate:g} msgs/s x {lines} lines for "
            f"{plan.fresh_duration:g} s, a probe every {plan.probe_every:g} s")
        r = freshness.measure(stack.settings, stack.peer, rate, lines,
                              plan.fresh_duration, plan.probe_every, db=f"fresh_{name}")
        i, p = r["influent"], r["peer"]
        log(f"  influent p50 {i['p50_s']:.3f} s p99 {i['p99_s']:.3f} s (lost {i['lost']}; all load "
            f"rows visible {i['all_load_visible_after_load_end_s']} s after the load ended; load "
            f"{i['load_msgs_per_s']:.0f} msg/s); peer p50 {p['p50_s']:.3f} s p99 "
            f"{p['p99_s']:.3f} s (load {p['load_msgs_per_s']:.0f} msg/s)")
        out[name] = r
    return out


def crash_recovery(store: str, base: Settings, messages: list[bytes], rows: int,
                   work: Path) -> dict:
    """Like ``benchmarks.recovery.measure_store`` (its helpers are reused), but the worker is
    killed (SIGKILL) instead of stopped: a clean stop persists every buffer first, so the
    restart would have nothing buffered to recover. Here the N rows are only in the
    changelog-backed buffers table (RocksDB or changelog) when the new worker starts."""
    settings = base.replace(store=store, topic_prefix=f"crash{uuid.uuid4().hex[:6]}.",
                            state_dir=work / f"crash-{store}", worker_web_port=devstack.free_port(),
                            http_bind=f"127.0.0.1:{devstack.free_port()}")
    logs = work / f"crash-{store}" / "logs"
    worker = devstack.start_worker(settings, logs, die_with_parent=True)
    api = devstack.start_api(settings, logs, die_with_parent=True)
    try:
        t0 = time.monotonic()
        asyncio.run(recovery_bench.produce(settings, messages, "bench"))
        while recovery_bench.count(settings, "bench") < rows:
            time.sleep(0.5)
        ingest_s = time.monotonic() - t0
        time.sleep(3)  # let the source offsets commit: recovery replays the table, not the topic
        os.killpg(worker.pid, signal.SIGKILL)
        devstack.stop(worker)
        # The broker evicts the dead member after its session timeout; a worker started earlier
        # waits that long in JoinGroup (a Kafka failover cost, not a recovery cost): wait here.
        time.sleep(SESSION_TIMEOUT_S + 2)
        offset = worker.log_path.stat().st_size
        t1 = time.monotonic()
        worker = devstack.launch_worker(settings, logs, die_with_parent=True)
        ready_s = recovery_bench.wait_ready_line(worker.log_path, offset, timeout=900)
        restart_total_s = time.monotonic() - t1
        tail = worker.log_path.read_bytes()[offset:].decode("utf-8", "replace")
        found = re.search(r"recovered (\d+) buffered batches", tail)
        return {"store": store, "rows": rows, "ingest_s": ingest_s, "ready_s": ready_s,
                "restart_total_s": restart_total_s,
                "recovered_batches": int(found.group(1)) if found else None,
                "rows_after_restart": recovery_bench.count(settings, "bench")}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # a clean stop would persist 1M rows first
        devstack.stop(worker)
        devstack.stop(api)


def peer_recovery(work: Path, messages: list[bytes], rows: int) -> dict:
    """influxd with every point in its WAL (nothing snapshotted), killed and started again:
    start -> /ping answers (the WAL is replayed before the HTTP service opens)."""
    peer = Peer.start(work / "peer-recovery", profile="recovery")
    try:
        ingest.peer_ingest(peer, messages, "rec", rows, rows)
        wal = peer.data_bytes("rec")
        tsm = sum(p.stat().st_size for p in peer.tsm_files("rec"))
        ready_s = peer.restart(kill=True)
        t0 = time.monotonic()
        seen = peer.count("rec")
        return {"rows": rows, "ready_s": ready_s, "first_count_s": time.monotonic() - t0,
                "rows_after_restart": seen, "wal_bytes_before_restart": wal["wal"],
                "tsm_bytes_before_restart": tsm}
    finally:
        peer.stop()


def phase_recovery(stack: Stack, plan: Plan) -> dict:
    rows = plan.recovery_rows
    log(f"recovery: {rows:,} buffered rows, stores {', '.join(plan.recovery_stores)}")
    messages = generate_messages(rows, 5000)
    base = stack.settings.replace(persist_max_rows=10**9, persist_max_bytes=2**40,
                                  persist_max_age=10**6)
    out: dict = {"rows": rows, "influent": {}, "influent_clean_stop": {}}
    work = stack.work / "recovery"
    for store in plan.recovery_stores:
        r = crash_recovery(store, base, messages, rows, work)
        log(f"  influent ({store}, killed) start -> ready {r['ready_s']:.2f} s, "
            f"{r['recovered_batches']} batches recovered")
        out["influent"][store] = r
        if plan.clean_recovery:
            r = recovery_bench.measure_store(store, base, messages, rows, work)
            log(f"  influent ({store}, clean stop: benchmarks.recovery) start -> ready "
                f"{r['ready_s']:.2f} s")
            out["influent_clean_stop"][store] = r
    out["peer"] = peer_recovery(stack.work, messages, rows)
    log(f"  peer (killed) start -> ready {out['peer']['ready_s']:.2f} s "
        f"({out['peer']['wal_bytes_before_restart'] / 1e6:.0f} MB of WAL replayed)")
    return out


def phase_compaction(stack: Stack, plan: Plan) -> dict:
    settings = stack.settings.replace(topic_prefix="cbench.", partitions=4,
                                      state_dir=stack.work / "compaction",
                                      http_bind=f"127.0.0.1:{devstack.free_port()}",
                                      worker_web_port=devstack.free_port())
    per_message = max(1, plan.lines // plan.compaction_files)
    r = compaction_bench.measure_on(settings, stack.work / "compaction" / "logs", plan.hosts,
                                    plan.hours, per_message, min(plan.query_iterations, 3))
    b, a = r["before"], r["after"]
    log(f"  {b['files']} files -> {a['files']} in {r['compaction_s']:.0f} s; object store "
        f"{b['object_store_bytes']:,} -> {a['object_store_bytes']:,} bytes; "
        f"{a['bytes'] / max(1, a['rows']):.2f} B/row; answers {sorted(set(r['answers'].values()))}")
    return r


# ---- main ------------------------------------------------------------------------------------


PHASES = ("ingest", "storage", "queries", "query_load", "freshness", "recovery", "compaction")


def run(plan: Plan, phases: tuple[str, ...], keep: bool) -> dict:
    started = time.monotonic()
    results: dict = {
        "plan": {**plan.__dict__, "lines": plan.lines, "persist_max_rows": plan.persist_max_rows,
                 "recovery_stores": list(plan.recovery_stores),
                 "query_types": list(plan.query_types)},
        "machine": machine_info(), "commit": git_commit(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.run" + (" --quick" if plan.name == "quick" else ""),
        "data": {"generator": "benchmarks.tsbs cpu-only", "hosts": plan.hosts,
                 "hours": plan.hours, "lines": plan.lines, "seed": 123},
    }
    log(f"plan {plan.name}: {plan.hosts} hosts x {plan.hours:g} h = {plan.lines:,} lines; "
        f"commit {results['commit']}; {results['machine'].get('nproc')} CPUs")
    work = Path(tempfile.mkdtemp(prefix="influent-bench-"))
    box: dict = {}
    gen = threading.Thread(target=lambda: box.update(lines=list(
        generate_lines(plan.hosts, plan.hours))), daemon=True)
    gen.start()
    stack = start_stack(work, plan)
    gen.join()
    lines: list[str] = box["lines"]
    log(f"services up in {time.monotonic() - started:.0f} s (work dir {work})")
    results["loadavg"] = {}

    def phase(name: str, fn) -> None:
        before = loadavg()
        results[name] = fn(stack, plan)
        results["loadavg"][name] = {"start": before, "end": loadavg()}

    try:
        if "ingest" in phases:
            phase("ingest", lambda st, pl: phase_ingest(st, pl, lines))
            state = wait_persisted(stack.settings, DB, plan.partitions)
            results["ingest"]["persisted_after_ingest"] = state
        if "storage" in phases:
            phase("storage", phase_storage)
        if "queries" in phases and "ingest" in phases:
            phase("queries", phase_queries)
        if "query_load" in phases and "ingest" in phases:
            phase("query_load", phase_query_load)
        if "freshness" in phases:
            phase("freshness", phase_freshness)
        if "recovery" in phases:
            phase("recovery", phase_recovery)
        if "compaction" in phases:
            phase("compaction", phase_compaction)
    finally:
        stack.stop()
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - started
    return results


@click.command()
@click.option("--quick", is_flag=True, help="small data, about two minutes")
@click.option("--phases", default=",".join(PHASES), show_default=True,
              help="comma-separated subset of the phases")
@click.option("--query-types", default=",".join(queries.QUERY_TYPES), show_default=True,
              help="comma-separated subset of the TSBS query types")
@click.option("--keep", is_flag=True, help="keep the temp dir (logs, state) for post-mortems")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR),
              show_default=True)
def main(quick: bool, phases: str, query_types: str, keep: bool, out_dir: str) -> None:
    """Measure influent against InfluxDB 1.x, side by side, in one run."""
    types = tuple(t.strip() for t in query_types.split(",") if t.strip())
    bad = [t for t in types if t not in queries.QUERY_TYPES]
    if bad:
        raise click.BadParameter(f"unknown query types {bad}; choose from {queries.QUERY_TYPES}")
    plan = dataclasses.replace(QUICK if quick else FULL, query_types=types)
    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        raise click.BadParameter(f"unknown phases {unknown}; choose from {PHASES}")
    results = run(plan, chosen, keep)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, default=str) + "\n"
    (out / "latest.json").write_text(text)
    (out / f"{plan.name}.json").write_text(text)  # the last run of each size, for the docs
    print()
    print(report.render_text(results))
    png = report.plot_ratios(results, out / "ratios.png")
    log(f"wrote {out / 'latest.json'}" + (f" and {png}" if png else ""))
    mismatches = report.mismatches(results)
    if mismatches:
        print("\n!!! WRONG ANSWERS: " + ", ".join(mismatches), file=sys.stderr)


if __name__ == "__main__":
    main()
