"""Deterministic TSBS-style "cpu-only" line protocol generator.

Mirrors the shape of the Time Series Benchmark Suite cpu-only use case (measurement ``cpu``,
10 tags, 10 integer fields, one point per host every 10 s) so that parser and ingest benchmarks
run on realistic data without the Go tool. Streaming: lines are produced one at a time, so
large data sets never sit in memory.

    python -m benchmarks.tsbs --hosts 100 --hours 1 --seed 123 > cpu.lp
"""
from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import click

START_NS = 1_451_606_400_000_000_000  # 2016-01-01T00:00:00Z, the TSBS default start
INTERVAL_NS = 10_000_000_000

REGIONS = {
    "us-east-1": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    "us-west-1": ["us-west-1a", "us-west-1b"],
    "us-west-2": ["us-west-2a", "us-west-2b", "us-west-2c"],
    "eu-west-1": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
    "eu-central-1": ["eu-central-1a", "eu-central-1b"],
    "ap-southeast-1": ["ap-southeast-1a", "ap-southeast-1b"],
    "ap-southeast-2": ["ap-southeast-2a", "ap-southeast-2b"],
    "ap-northeast-1": ["ap-northeast-1a", "ap-northeast-1c"],
    "sa-east-1": ["sa-east-1a", "sa-east-1b", "sa-east-1c"],
}
OSES = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"]
ARCHES = ["x64", "x86"]
TEAMS = ["SF", "NYC", "LON", "CHI"]
ENVIRONMENTS = ["production", "staging", "test"]
FIELDS = ("usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice")


@dataclass(frozen=True)
class Host:
    """One simulated host: its fixed tag set, already serialised as an LP series key."""
    series: str


def make_hosts(count: int, rng: random.Random) -> list[Host]:
    hosts = []
    regions = list(REGIONS)
    for i in range(count):
        region = rng.choice(regions)
        tags = (
            ("hostname", f"host_{i}"),
            ("region", region),
            ("datacenter", rng.choice(REGIONS[region])),
            ("rack", str(rng.randrange(100))),
            ("os", rng.choice(OSES)),
            ("arch", rng.choice(ARCHES)),
            ("team", rng.choice(TEAMS)),
            ("service", str(rng.randrange(20))),
            ("service_version", str(rng.randrange(2))),
            ("service_environment", rng.choice(ENVIRONMENTS)),
        )
        hosts.append(Host("cpu," + ",".join(f"{k}={v}" for k, v in tags)))
    return hosts


def generate_lines(hosts: int, hours: float, seed: int = 123,
                   start_ns: int = START_NS) -> Iterator[str]:
    """Yield cpu-only lines (without newline), time-major like TSBS: every host per tick.

    As in TSBS's devops generator, each field is a random walk with normal(0, 1) steps clamped
    to [0, 100], written as an integer (``usage_user=58i``), which is what TSBS emits for the
    influx format.
    """
    rng = random.Random(seed)
    host_list = make_hosts(hosts, rng)
    state = [[rng.uniform(0, 100) for _ in FIELDS] for _ in host_list]
    ticks = int(hours * 3600 * 1_000_000_000 // INTERVAL_NS)
    gauss = rng.gauss
    for tick in range(ticks):
        ts = start_ns + tick * INTERVAL_NS
        for host, values in zip(host_list, state):
            parts = []
            for j, name in enumerate(FIELDS):
                v = values[j] + gauss(0.0, 1.0)
                v = 0.0 if v < 0.0 else 100.0 if v > 100.0 else v
                values[j] = v
                parts.append(f"{name}={int(v)}i")
            yield f"{host.series} {','.join(parts)} {ts}"


def generate_messages(lines: int, per_message: int, seed: int = 123,
                      start_ns: int = START_NS, hosts: int = 100) -> list[bytes]:
    """``lines`` lines cut into messages of ``per_message`` lines (newline-terminated)."""
    hours = lines / hosts * INTERVAL_NS / 3_600_000_000_000 + 1
    out: list[bytes] = []
    chunk: list[str] = []
    for i, line in enumerate(generate_lines(hosts, hours, seed, start_ns)):
        if i == lines:
            break
        chunk.append(line)
        if len(chunk) == per_message:
            out.append(("\n".join(chunk) + "\n").encode())
            chunk = []
    if chunk:
        out.append(("\n".join(chunk) + "\n").encode())
    return out


@click.command()
@click.option("--hosts", default=100, show_default=True, help="number of simulated hosts")
@click.option("--hours", default=1.0, show_default=True, help="simulated time span")
@click.option("--seed", default=123, show_default=True, help="random seed (output is deterministic)")
@click.option("--start", "start_ns", default=START_NS, show_default=True,
              help="first timestamp, ns since the epoch")
def main(hosts: int, hours: float, seed: int, start_ns: int) -> None:
    """Write TSBS-style cpu-only line protocol to stdout."""
    out = sys.stdout
    for line in generate_lines(hosts, hours, seed, start_ns):
        out.write(line)
        out.write("\n")


if __name__ == "__main__":
    main()
