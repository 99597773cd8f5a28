"""Ingest by message size, and what each input byte costs downstream (a short stand-alone run).

``python -m benchmarks.ingest_sizes [--sizes 1:5000,10:20000,5000:200000] [--out FILE]`` starts
Kafka, Redis, one worker and the query API (no peer), then for each ``lines per message:lines``
produces that many TSBS cpu lines and stops the clock when a query counts them all. It reports
lines/s, CPU seconds per million lines for the worker and for the whole system (worker + Kafka +
Redis + API), and the write amplification: bytes appended to each Kafka topic (log segment growth) and bytes Redis
received (``total_net_input_bytes``), per input byte. Compare only runs made back to back on the
same machine (old vs new code, same command).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import freshness, ingest, tsbs
from influent import devstack
from influent.config import Settings


def topic_bytes(kafka_dir: Path, prefix: str) -> dict[str, int]:
    """Bytes in each topic's log segments (all partitions), by topic name."""
    out: dict[str, int] = {}
    for part in (kafka_dir / "log").glob(f"{prefix}*"):
        topic = part.name.rsplit("-", 1)[0]
        out[topic] = out.get(topic, 0) + sum(f.stat().st_size for f in part.glob("*.log"))
    return out


def redis_input(url: str) -> int:
    return int(redis.Redis.from_url(url).info("stats")["total_net_input_bytes"])


class WrittenBytes:
    """Bytes appended to the pipeline's Kafka topics and received by Redis from the moment it
    is made, per input byte (write amplification)."""

    def __init__(self, kafka_dir: Path, prefix: str, redis_url: str):
        self.kafka_dir, self.prefix, self.redis_url = kafka_dir, prefix, redis_url
        self.kafka0 = topic_bytes(kafka_dir, prefix)
        self.redis0 = redis_input(redis_url)

    def per_input_byte(self, input_bytes: int) -> dict:
        time.sleep(2)  # let the producers' last batches reach the logs
        kafka = topic_bytes(self.kafka_dir, self.prefix)
        written = {t: b - self.kafka0.get(t, 0) for t, b in sorted(kafka.items())}
        per_topic = {t: round(b / input_bytes, 3) for t, b in written.items() if b}
        redis_b = round((redis_input(self.redis_url) - self.redis0) / input_bytes, 3)
        internal = sum(v for t, v in per_topic.items() if not t.endswith(".writes"))
        return {"kafka_bytes_per_input_byte": per_topic, "redis_bytes_per_input_byte": redis_b,
                "after_writes_topic": round(internal + redis_b, 3)}


def beside_peer(settings: Settings, services: dict, peer, kafka_dir: Path, lines: list[str],
                runs: list[tuple[int, int]], db: str = "sizes", writers: int = 4) -> dict:
    """For each (lines per message, lines): influent with messages of that many lines and the
    peer with /write requests of the same size, end to end, CPU per M lines for the whole
    system, and influent's write amplification. Keys: lines per message."""
    out = {}
    for size, count in runs:
        bodies = ingest.chunk_lines(lines[:count], size)
        n = min(count, len(lines))
        written = WrittenBytes(kafka_dir, settings.topic_prefix.rstrip("."), settings.redis_url)
        inf = ingest.influent_ingest(settings, services, bodies, f"{db}{size}", n, n)
        inf.update(written.per_input_byte(inf["bytes"]))
        ref = ingest.peer_ingest(peer, bodies, f"{db}{size}", n, n, writers=writers)
        out[size] = {"influent": inf, "peer": ref, "lines": n}
        print(f"  {size}-line messages/requests, {n:,} lines: influent {inf['lines_per_s']:,.0f} "
              f"lines/s ({inf['pipeline_cpu_s_per_m_lines']:.1f} CPU s/M lines, whole system), "
              f"peer {ref['lines_per_s']:,.0f} ({ref['cpu_s_per_m_lines']:.1f}); bytes written "
              f"after the writes topic per input byte {inf['after_writes_topic']}", flush=True)
    return out


def start_profile(pid: int, out: Path) -> subprocess.Popen | None:
    """py-spy sampling a process (and its threads) until :func:`stop_profile`."""
    spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "--format", "raw", "-o", str(out),
                             "--rate", "100", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


#: Frames worth naming in a summary: the project's modules and the libraries on the hot path.
PROFILE_MODULES = ("agents/", "topics/", "persist/", "tables/", "faust/", "aiokafka/", "redis/",
                   "pyarrow/", "mode/", "query_api/", "datafusion/", "uvicorn/", "starlette/",
                   "fastapi/")


def summarize_profile(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """The project and hot-path library functions most busy samples were in (inclusive, each
    counted once per stack), as shares of the samples that were not idle waits."""
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(w in frames[-1] for w in ("select (", "poll (", "wait (", "_run_once")):
            continue  # the event loop or a thread waiting for work
        total += int(count)
        for frame in {f for f in frames if any(m in f for m in PROFILE_MODULES)}:
            inclusive[frame] += int(count)
    return [(frame, round(n / total, 3)) for frame, n in inclusive.most_common(top)] if total else []


def fresh(settings: Settings, rate: float, lines: int, duration: float) -> dict:
    """Produce → visible latency of probes under a steady load (influent only)."""
    start_ns = (time.time_ns() // 10_000_000_000) * 10_000_000_000 - 3_600_000_000_000
    messages = freshness.load_messages(rate, lines, duration, start_ns)
    res = asyncio.run(freshness.influent_freshness(settings, f"fresh{int(rate)}x{lines}", messages,
                                                   rate, duration, probe_every=0.2))
    print(f"freshness {rate:g} msg/s x {lines} lines: p50 {res['p50_s']:.3f} s, p99 "
          f"{res['p99_s']:.3f} s, lost {res['lost']}, load {res['load_msgs_per_s']:.0f} msg/s; "
          f"a poll query itself p50 {res['poll_query_p50_s']:.3f} s, p99 "
          f"{res['poll_query_p99_s']:.3f} s",
          flush=True)
    return res


def run(sizes: list[tuple[int, int]], profile_dir: Path | None = None,
        loads: list[tuple[float, int]] = (), fresh_s: float = 15.0) -> dict:
    with bench_stack("ingest-sizes-", "sizes.", persist_max_rows=10**9, persist_max_bytes=2**40,
                     persist_max_age=24 * 3600.0) as (work, settings, services):
        results = {}
        for size, lines in sizes:
            messages = tsbs.generate_messages(lines, size)
            written = WrittenBytes(work / "kafka", "sizes", settings.redis_url)
            spies = {name: start_profile(services[name].pid, profile_dir / f"{name}-{size}.txt")
                     for name in ("worker", "api")} if profile_dir else {}
            try:
                res = ingest.influent_ingest(settings, services, messages, f"sizes{size}", lines,
                                             lines)
            finally:
                for spy in spies.values():
                    stop_profile(spy)
            for name, spy in spies.items():
                if spy is not None:
                    res[f"profile_top_{name}"] = summarize_profile(
                        profile_dir / f"{name}-{size}.txt")
            res.update(written.per_input_byte(res["bytes"]))
            results[size] = res
            print(f"{size:>5} lines/message: {res['lines_per_s']:>9,.0f} lines/s, worker "
                  f"{res['worker_cpu_s_per_m_lines']:.1f} CPU s/M lines, system "
                  f"{res['pipeline_cpu_s_per_m_lines']:.1f}; Kafka bytes/input byte "
                  f"{res['kafka_bytes_per_input_byte']}, Redis {res['redis_bytes_per_input_byte']}",
                  flush=True)
        if loads and not sizes:  # a worker that just started is still starting its agents
            ingest.influent_ingest(settings, services, tsbs.generate_messages(2000, 1), "warmup",
                                   2000, 2000)
        for rate, lines in loads:
            name = f"{rate:g}x{lines}"
            spies = {svc: start_profile(services[svc].pid, profile_dir / f"{svc}-fresh{name}.txt")
                     for svc in ("worker", "api")} if profile_dir else {}
            try:
                results[f"fresh {name}"] = fresh(settings, rate, lines, fresh_s)
            finally:
                for spy in spies.values():
                    stop_profile(spy)
        return results


@contextlib.contextmanager
def bench_stack(work_prefix: str, topic_prefix: str, **overrides):
    """Kafka, Redis, a worker and the API on free ports in a temporary folder, stopped on the
    way out; yields the folder, the settings (``overrides`` on top of the defaults here) and
    the services by name (worker, kafka, redis, api)."""
    work = Path(tempfile.mkdtemp(prefix=work_prefix))
    logs = work / "logs"
    kafka_port, controller, redis_port = devstack.free_ports(3)
    kafka = devstack.launch_kafka(work / "kafka", logs, kafka_port, controller, die_with_parent=True)
    redis_svc = devstack.launch_redis(work / "redis", logs, redis_port, die_with_parent=True)
    worker = api = None
    try:
        devstack.wait_ready(redis_svc, 30)
        devstack.wait_ready(kafka, 120)
        settings = Settings(
            state_dir=work / "influent", kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0", topic_prefix=topic_prefix,
            partitions=8, http_bind=f"127.0.0.1:{devstack.free_port()}",
            worker_web_port=devstack.free_port(), **overrides)
        worker = devstack.launch_worker(settings, logs, die_with_parent=True)
        api = devstack.launch_api(settings, logs, die_with_parent=True)
        devstack.wait_ready(worker, 180)
        devstack.wait_ready(api, 60)
        yield work, settings, {"worker": worker, "kafka": kafka, "redis": redis_svc, "api": api}
    finally:
        for service in (api, worker):
            if service is not None:
                devstack.stop(service, timeout=120)
        devstack.stop(redis_svc)
        devstack.stop(kafka, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1:5000,10:20000,5000:200000",
                        help="lines per message:lines, comma-separated")
    parser.add_argument("--freshness", default="",
                        help="steady loads messages/s x lines, e.g. 200x50,2000x1 (influent only)")
    parser.add_argument("--fresh-seconds", type=float, default=15.0)
    parser.add_argument("--out", default="")
    parser.add_argument("--profile", default="", help="folder for py-spy profiles of the worker and the query API")
    args = parser.parse_args()
    profile = Path(args.profile) if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",") if s]
    loads = [(float(r), int(n)) for r, n in (x.split("x") for x in args.freshness.split(",") if x)]
    results = run(sizes, profile, loads, args.fresh_seconds)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
