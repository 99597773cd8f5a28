"""The big API fuzzing run (``make fuzz``): at least ``--requests`` generated requests against every
operation of ``/openapi.json`` (tests/api_fuzzing.py), on a stack of its own.

    python -m benchmarks.fuzz --requests 5000

Starts Kafka, Redis, one worker and two query APIs (one open, one with a bootstrap token) on
free loopback ports with all state in a temp dir, seeds a database named as the schema's
examples, then sends about half of the requests to the open API and half to the API with a token
(with the token; and a tenth without one or with a wrong one, which must all get 401), then
``--lp-bodies`` generated line protocol bodies through HTTP and Kafka (tests/lp_fuzzing.py).
Prints the answers by status code and every failed check; exits 1 when a check failed (an undocumented
5xx, a hang, a dropped connection, a request let through without a token) or a process is not
alive and healthy afterwards.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
import httpx

from influent import devstack
from influent.config import Settings
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
from hypothesis import strategies as st

from tests import lp_fuzzing
from tests.api_fuzzing import Credentials, FuzzReport, Fuzzer, healthy

TOKEN = "fuzz-bootstrap-token"
REQUEST_TIMEOUT = 60.0


def start_stack(work: Path) -> tuple[Settings, Settings, list[devstack.Service]]:
    """(open API settings, token API settings, services started, in start order)."""
    logs = work / "logs"
    kafka_port, controller, redis_port = devstack.free_ports(3)
    kafka = devstack.launch_kafka(work / "kafka", logs, kafka_port, controller, die_with_parent=True)
    redis = devstack.launch_redis(work / "redis", logs, redis_port, die_with_parent=True)
    devstack.wait_ready(redis, 30)
    devstack.wait_ready(kafka, 120)
    settings = Settings(state_dir=work / "influent", kafka_bootstrap=f"127.0.0.1:{kafka_port}",
                        redis_url=f"redis://127.0.0.1:{redis_port}/0", topic_prefix="fuzz.",
                        partitions=2, http_bind=f"127.0.0.1:{devstack.free_port()}",
                        worker_web_port=devstack.free_port(), query_timeout=20.0)
    secured = settings.replace(token=TOKEN, http_bind=f"127.0.0.1:{devstack.free_port()}")
    services = [kafka, redis, devstack.start_api(settings, logs, die_with_parent=True)]
    services.append(devstack.start_worker(settings, logs, 180, die_with_parent=True))
    services.append(devstack.launch_api(secured, logs, die_with_parent=True))
    devstack.wait_ready(services[-1], 60)
    return settings, secured, services


def fuzz_line_protocol(api: lp_fuzzing.Api, bodies: int) -> dict[str, int]:
    """``bodies`` generated line protocol bodies (8 per example) through HTTP and Kafka, with
    every check of tests/lp_fuzzing.py; the totals."""
    totals = {"bodies": 0, "rejected_lines": 0, "sentinels": 0}

    @hypothesis_settings(max_examples=max(1, bodies // 8), deadline=None, database=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(lp_fuzzing.bodies(), min_size=8, max_size=8))
    def send(generated: list) -> None:
        outcomes = lp_fuzzing.fuzz_both_paths(api, generated)
        totals["bodies"] += len(outcomes)
        totals["rejected_lines"] += sum(len(o.rejected_lines) for o in outcomes)
        totals["sentinels"] += sum(len(o.body.sentinels) for o in outcomes)

    send()
    return totals


def run(requests: int, work: Path, lp_bodies: int = 0
        ) -> tuple[FuzzReport, FuzzReport, dict[str, int], list[str]]:
    """(open API report, token API report, line protocol totals, problems with the processes
    afterwards)."""
    settings, secured, services = start_stack(work)
    try:
        httpx.post(f"{settings.http_url}/api/v3/write_lp", params={"db": "mydb"}, timeout=60,
                   content=b"cpu,host=a usage=1.5 1700000000000000000\n").raise_for_status()
        open_fuzzer = Fuzzer(settings.http_url, REQUEST_TIMEOUT)
        open_fuzzer.run_until(requests // 2, 10, Credentials("open"))
        token_fuzzer = Fuzzer(secured.http_url, REQUEST_TIMEOUT, auth_enabled=True,
                             schema_token=TOKEN)
        token_fuzzer.run_until(requests - requests // 10 - open_fuzzer.report.requests, 10,
                               Credentials("token", TOKEN))
        token_fuzzer.run(1, Credentials("none", None, valid=False))
        token_fuzzer.run(1, Credentials("wrong", "not-a-token", valid=False))
        token_fuzzer.run_until(requests - open_fuzzer.report.requests, 2,
                               Credentials("wrong", "not-a-token", valid=False))
        problems = []
        try:
            lp = fuzz_line_protocol(lp_fuzzing.Api(secured, TOKEN), lp_bodies) if lp_bodies else {}
        except AssertionError as exc:  # a failed line protocol check (hypothesis shows the case)
            lp, problems = {}, [f"line protocol: {exc}"]
        problems += [f"{s.name} is not alive; log {s.log_path}" for s in services if not s.alive()]
        for url in (settings.http_url, secured.http_url):
            if healthy(url) != (200, 200):
                problems.append(f"{url}: /health, /ready = {healthy(url)}")
        return open_fuzzer.report, token_fuzzer.report, lp, problems
    finally:
        for service in reversed(services):
            devstack.stop(service, timeout=60)


@click.command()
@click.option("--requests", default=5000, show_default=True, help="generated requests, at least")
@click.option("--lp-bodies", default=80, show_default=True,
              help="line protocol bodies through HTTP and Kafka afterwards (0: none)")
@click.option("--keep", is_flag=True, help="keep the temp dir (logs) afterwards")
def main(requests: int, lp_bodies: int, keep: bool) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="influent-fuzz-"))
    open_report, token_report, lp, problems = run(requests, work, lp_bodies)
    total = FuzzReport()
    for report in (open_report, token_report):
        total.statuses.update(report.statuses)
        total.requests += report.requests
        total.failures += report.failures
    print(f"open API:  {open_report.summary()}")
    print(f"token API: {token_report.summary()}")
    print(f"total:     {total.summary()} in {time.monotonic() - started:.0f} s")
    if lp:
        print(f"line protocol: {lp['bodies']} bodies through HTTP and Kafka, "
              f"{lp['rejected_lines']} lines rejected (same on both paths), "
              f"{lp['sentinels']} sentinel lines")
    for line in total.failures + problems:
        print("FAILED:", line)
    print("logs:", work / "logs" if keep else "(removed; --keep keeps them)")
    if not keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if total.failures or problems else 0)


if __name__ == "__main__":
    main()
