"""A soak with faults: N minutes of mixed writes (Kafka messages of 1 to 5 000 lines, HTTP
writes, several databases, new keys, overwrites, bad lines) and queries, while a schedule kills,
restarts and takes away the parts of the stack; then every check against what was
acknowledged (benchmarks/soak_checks.py).

    python -m benchmarks.soak                       # 10 minutes, all seven fault kinds
    python -m benchmarks.soak --minutes 2 --faults worker_kill,redis_restart

Starts its own Kafka, Redis, worker and query API (the dev-stack code, free ports, a temp dir)
and writes the report to benchmarks/results/soak.json.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import httpx

from benchmarks import soak_faults
from benchmarks.soak_checks import MIRROR, check_subscription, check_trigger, read_topic, run_checks
from benchmarks.soak_faults import FaultOptions
from benchmarks.soak_load import PROBE_DB, TABLE, Load, probe
from benchmarks.soak_stack import SoakStack

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
DATABASES = ["soak0", "soak1", "soak2"]
SUBSCRIPTION_TOPIC = "soak.forwarded"
MIRROR_PLUGIN = f'''"""Soak: copy every row written to {TABLE} into {MIRROR}, its value as a tag, so each
(key, value) written leaves a row of its own."""


def process_writes(influxdb3_local, table_batches, args=None):
    for table_batch in table_batches:
        for row in table_batch["rows"]:
            line = LineBuilder("{MIRROR}")
            line.tag("s", row["s"])
            line.tag("v", str(row["v"]))
            line.int64_field("x", 1)
            line.time_ns(row["time"])
            influxdb3_local.write(line)
'''


@dataclass
class SoakConfig:
    seconds: float = 600.0
    rate: float = 1000.0  # lines per second, Kafka and HTTP together
    kinds: tuple[str, ...] = soak_faults.KINDS
    faults: FaultOptions = field(default_factory=FaultOptions)
    settle_timeout: float = 900.0  # how long the end checks may wait for everything to arrive
    persist_max_rows: int = 20_000
    persist_max_age: float = 10.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def post(stack: SoakStack, path: str, body: dict, ok: tuple[int, ...] = (200, 201, 204, 409)):
    resp = httpx.post(f"{stack.settings.http_url}{path}", json=body, timeout=60)
    if resp.status_code not in ok:
        raise RuntimeError(f"POST {path} {body}: {resp.status_code} {resp.text[:300]}")


def wait_for(what: str, predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def set_up(stack: SoakStack, load: Load) -> None:
    """Databases and tables, a subscription on soak0 (to a Kafka topic) and an on-write trigger
    on soak1; returns once both have forwarded a first write."""
    for db in DATABASES + [PROBE_DB]:
        post(stack, "/api/v3/configure/database", {"db": db})
        post(stack, "/api/v3/configure/table", {"db": db, "table": TABLE, "tags": ["s"],
                                                "fields": [{"name": "v", "type": "int64"}]})
    (Path(stack.settings.plugins_path) / "soak_mirror.py").write_text(MIRROR_PLUGIN)
    post(stack, "/api/v3/configure/subscription", {
        "db": DATABASES[0], "name": "soak",
        "destination": {"kind": "kafka", "topic": SUBSCRIPTION_TOPIC}})
    post(stack, "/api/v3/configure/processing_engine_trigger", {
        "db": DATABASES[1], "plugin_filename": "soak_mirror.py", "trigger_name": "soak_mirror",
        "trigger_specification": f"table:{TABLE}", "trigger_arguments": None,
        "trigger_settings": {"run_async": False, "error_behavior": "retry"}, "disabled": False})

    wait_for("the subscription and the trigger to forward a write",
             lambda: _forwarding(stack, load), 600, 0)
    load.ledger.pairs.clear()  # from now on, every write must reach both


def _forwarding(stack: SoakStack, load: Load) -> bool:
    """Write a marker to each of the two databases; whether both were forwarded within 30 s
    (a new subscription or trigger starts with the writes after it is picked up)."""
    rng = random.Random()
    markers = {}
    for db in DATABASES[:2]:
        good, _ = load.ledger.compose(db, 1, rng, 0.0, 0.0)
        resp = httpx.post(f"{stack.settings.http_url}/api/v3/write_lp",
                          params={"db": db, "precision": "ns"}, content=good[0].text(),
                          timeout=60)
        if resp.status_code != 204:
            raise RuntimeError(f"marker write refused: {resp.status_code} {resp.text[:300]}")
        load.ledger.acknowledged(good, [], db)
        markers[db] = {(good[0].series, good[0].time, good[0].value)}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = asyncio.run(read_topic(stack.settings, SUBSCRIPTION_TOPIC, timeout=30))
        if (check_subscription(records, markers[DATABASES[0]])["ok"]
                and check_trigger(stack.settings, markers[DATABASES[1]], DATABASES[1])["ok"]):
            return True
        time.sleep(1)
    return False


def inject(stack: SoakStack, load: Load, kind: str, opts: FaultOptions) -> dict:
    """One fault: inject it, undo it, then time a new write until it is visible."""
    log(f"fault {kind}")
    record: dict = {"kind": kind, "injected_at": time.time()}
    try:
        record["removed_at"] = soak_faults.INJECT[kind](stack, opts)
        deadline = time.monotonic() + opts.restart_timeout
        seen = probe(stack.settings, load, lambda: time.monotonic() > deadline)
        record["recovered_at"] = time.time()
        record["recovered"] = seen
    except Exception as exc:  # noqa: BLE001 - a fault that cannot be undone is a finding
        record.update(recovered=False, error=f"{type(exc).__name__}: {exc}",
                      recovered_at=time.time())
        record.setdefault("removed_at", record["recovered_at"])
    record["outage_s"] = round(record["removed_at"] - record["injected_at"], 2)
    record["recover_s"] = round(record["recovered_at"] - record["removed_at"], 2)
    log(f"  {kind}: outage {record['outage_s']} s, visible again {record['recover_s']} s later"
        + ("" if record["recovered"] else f" -- NOT RECOVERED {record.get('error', '')}"))
    return record


def run_schedule(stack: SoakStack, load: Load, config: SoakConfig) -> list[dict]:
    """Inject the faults on schedule (later if the previous one is still settling), restart
    whatever dies on its own, and keep the load running for ``config.seconds``."""
    started = time.time()
    faults = []
    plan = soak_faults.schedule(config.kinds, config.seconds)
    while plan or time.time() < started + config.seconds:
        now = time.time()
        for name in stack.check_crashes(now):
            log(f"{name} exited on its own; restarted (see the report's crashes)")
        if plan and now >= started + plan[0][0]:
            faults.append(inject(stack, load, plan.pop(0)[1], config.faults))
        else:
            time.sleep(0.5)
    return faults


def _in_windows(t0: float, t1: float, faults: list[dict]) -> bool:
    return any(t0 <= f["recovered_at"] and t1 >= f["injected_at"] for f in faults)


def summarize(config: SoakConfig, load: Load, faults: list[dict], checks: dict,
              stack: SoakStack, seconds: float) -> dict:
    rows = checks["rows"]
    during = [p["seconds"] for p in load.probes
              if _in_windows(p["sent_at"], p["sent_at"] + p["seconds"], faults)]
    outside = [p["seconds"] for p in load.probes
               if not _in_windows(p["sent_at"], p["sent_at"] + p["seconds"], faults)]
    stats = load.stats
    failed_during = sum(_in_windows(t, t, faults) for t in stats.query_failures_at)
    return {
        "ok": checks["ok"] and not stack.crashes and all(f["recovered"] for f in faults),
        "seconds": round(seconds, 1), "rate_lines_per_s": config.rate,
        "faults_injected": len(faults),
        "rows_lost": sum(r.get("lost", r.get("expected", 0)) for r in rows.values()),
        "rows_duplicated": sum(r.get("duplicated", 0) for r in rows.values()),
        "rows_wrong_value": sum(r.get("wrong_value", 0) for r in rows.values()),
        "rows_checked": sum(r.get("expected", 0) for r in rows.values()),
        "lines_sent": load.ledger.sent_lines, "overwrites": load.ledger.overwrites,
        "bad_lines": len(load.ledger.bad), "kafka_messages": stats.kafka_messages,
        "http_writes": stats.http_requests, "write_retries": stats.write_retries,
        "queries_ok": stats.queries_ok, "queries_failed": stats.queries_failed,
        "queries_failed_during_faults": failed_during,
        "freshness_worst_during_faults_s": round(max(during, default=0.0), 2),
        "freshness_worst_outside_faults_s": round(max(outside, default=0.0), 2),
        "freshness_median_s": round(sorted(during + outside)[len(during + outside) // 2], 2)
        if during or outside else None,
        "recover_s": {f["kind"]: f["recover_s"] for f in faults},
        "outage_s": {f["kind"]: f["outage_s"] for f in faults},
        "faults": faults, "crashes": stack.crashes, "checks": checks,
        "loadavg": os.getloadavg()[0]}


def settle(stack: SoakStack, load: Load, last_fault_at: float, timeout: float) -> dict:
    """Run the checks until all are green or ``timeout`` passes; the last result."""
    deadline = time.monotonic() + timeout
    dbs = DATABASES + [PROBE_DB]
    while True:
        stack.check_crashes(time.time())
        checks = run_checks(stack.settings, load.ledger, dbs, stack.objects,
                            (DATABASES[0], SUBSCRIPTION_TOPIC), DATABASES[1])
        newest = checks["files"]["newest_file_at"]
        checks["persist_resumed"] = {"ok": newest > last_fault_at, "newest_file_at": newest}
        checks["ok"] = checks["ok"] and checks["persist_resumed"]["ok"]
        if checks["ok"] or time.monotonic() > deadline:
            return checks
        log("  not yet: " + "; ".join(_failing(checks)))
        time.sleep(5)


def _failing(checks: dict) -> list[str]:
    failing = [f"rows {db} {r}" for db, r in checks["rows"].items() if not r["ok"]]
    return failing + [f"{name} {c}" for name, c in checks.items()
                      if name != "rows" and isinstance(c, dict) and not c["ok"]]


def run_soak(config: SoakConfig, work: Path) -> dict:
    """Start a stack in ``work``, run the soak, check, stop everything; the report."""
    log(f"starting the stack in {work}")
    stack = SoakStack.start(work, persist_max_rows=config.persist_max_rows,
                            persist_max_age=config.persist_max_age, compact_min_files=10**6)
    try:
        load = Load(stack.settings, DATABASES, config.rate)
        set_up(stack, load)
        log(f"load: {config.rate:g} lines/s for {config.seconds:g} s, faults {config.kinds}")
        started = time.time()
        load.start()
        try:
            faults = run_schedule(stack, load, config)
        finally:
            log("stopping the load")
            load.stop()
        seconds = time.time() - started
        last = max((f["recovered_at"] for f in faults), default=started)
        log("checking")
        checks = settle(stack, load, last, config.settle_timeout)
        return summarize(config, load, faults, checks, stack, seconds)
    finally:
        stack.stop()


@click.command()
@click.option("--minutes", default=10.0, show_default=True, help="how long the load runs")
@click.option("--rate", default=1000.0, show_default=True, help="lines per second")
@click.option("--faults", default=",".join(soak_faults.KINDS), show_default=True,
              help="fault kinds, comma-separated, in order")
@click.option("--store-down", default=30.0, show_default=True,
              help="seconds the object store stays away")
@click.option("--out", default=str(RESULTS), show_default=True, type=click.Path())
@click.option("--keep", is_flag=True, help="keep the stack's directory (logs, data)")
def main(minutes: float, rate: float, faults: str, store_down: float, out: str,
         keep: bool) -> None:
    kinds = tuple(k for k in faults.split(",") if k)
    unknown = set(kinds) - set(soak_faults.KINDS)
    if unknown:
        raise click.BadParameter(f"unknown fault kinds {sorted(unknown)}")
    config = SoakConfig(seconds=minutes * 60, rate=rate, kinds=kinds,
                        faults=FaultOptions(store_down_s=store_down))
    work = Path(tempfile.mkdtemp(prefix="influent-soak-"))
    try:
        report = run_soak(config, work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    report["command"] = f"python -m benchmarks.soak --minutes {minutes:g} --rate {rate:g} " \
                        f"--faults {','.join(kinds)}"
    report["config"] = asdict(config)
    Path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    raise SystemExit(0 if report["ok"] else 1)


def print_report(report: dict) -> None:
    print(f"soak {report['seconds']:.0f} s, {report['lines_sent']:,} lines "
          f"({report['kafka_messages']:,} Kafka messages, {report['http_writes']:,} HTTP writes,"
          f" {report['overwrites']:,} overwrites, {report['bad_lines']} bad lines), "
          f"load average {report['loadavg']:.1f}")
    print(f"faults injected {report['faults_injected']}; rows lost {report['rows_lost']}, "
          f"duplicated {report['rows_duplicated']}, wrong value {report['rows_wrong_value']} "
          f"of {report['rows_checked']:,}")
    print(f"worst freshness during faults {report['freshness_worst_during_faults_s']} s "
          f"(outside faults {report['freshness_worst_outside_faults_s']} s)")
    for f in report["faults"]:
        print(f"  {f['kind']:<18} outage {f['outage_s']:>6} s  visible again after "
              f"{f['recover_s']:>6} s" + ("" if f["recovered"] else "  NOT RECOVERED"))
    checks = report["checks"]
    for name in ("rejected", "files", "subscription", "trigger", "persist_resumed"):
        print(f"  check {name:<16} {'ok' if checks[name]['ok'] else 'FAILED'} {checks[name]}")
    for db, r in checks["rows"].items():
        print(f"  check rows {db:<11} {'ok' if r['ok'] else 'FAILED'} {r}")
    for c in report["crashes"]:
        print(f"  CRASH {c['service']} at {c['at']:.0f}")
    print("ALL CHECKS GREEN" if report["ok"] else "SOME CHECKS FAILED")


if __name__ == "__main__":
    main()
