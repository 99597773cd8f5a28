"""The seven fault kinds of the soak and their schedule. Each fault hurts the stack and undoes
the harm (restarts, returns the store); the soak then measures how long until a new write is
visible again."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from benchmarks.soak_stack import SoakStack

#: every fault kind, in the order a full soak injects them
KINDS = ("worker_kill", "rebalance", "kafka_restart", "redis_restart", "api_kill",
         "store_unavailable", "persist_failpoint")
#: the short form run by the tests
CI_KINDS = ("worker_kill", "redis_restart", "kafka_restart")
FAILPOINT = "after_object_write"


@dataclass
class FaultOptions:
    store_down_s: float = 30.0  # how long the object store stays away
    second_worker_s: float = 20.0  # how long the second worker stays in the group
    restart_timeout: float = 300.0


def worker_kill(stack: SoakStack, opts: FaultOptions) -> float:
    stack.kill_worker()
    removed = time.time()
    stack.restart_worker(timeout=opts.restart_timeout)
    return removed


def rebalance(stack: SoakStack, opts: FaultOptions) -> float:
    stack.join_second_worker(opts.restart_timeout)
    time.sleep(opts.second_worker_s)  # the fault's length: two workers share the partitions
    stack.leave_second_worker()
    return time.time()


def kafka_restart(stack: SoakStack, opts: FaultOptions) -> float:
    stack.stop_kafka()
    removed = time.time()
    stack.start_kafka(opts.restart_timeout)
    return removed


def redis_restart(stack: SoakStack, opts: FaultOptions) -> float:
    stack.stop_redis()
    removed = time.time()
    stack.start_redis(opts.restart_timeout)
    return removed


def api_kill(stack: SoakStack, opts: FaultOptions) -> float:
    stack.kill_api()
    removed = time.time()
    stack.restart_api(opts.restart_timeout)
    return removed


def store_unavailable(stack: SoakStack, opts: FaultOptions) -> float:
    stack.store_unavailable()
    try:
        time.sleep(opts.store_down_s)  # the fault's length
    finally:
        stack.store_available()
    return time.time()


def persist_failpoint(stack: SoakStack, opts: FaultOptions) -> float:
    """A worker that SIGKILLs itself between writing a Parquet object and committing it."""
    stack.restart_worker(env={"INFLUENT_FAILPOINT": FAILPOINT}, timeout=opts.restart_timeout)
    if not stack.wait_worker_exit(opts.restart_timeout):
        raise RuntimeError(f"the worker never reached the failpoint {FAILPOINT}")
    removed = time.time()
    stack.restart_worker(timeout=opts.restart_timeout)
    return removed


INJECT: dict[str, Callable[[SoakStack, FaultOptions], float]] = {
    "worker_kill": worker_kill, "rebalance": rebalance, "kafka_restart": kafka_restart,
    "redis_restart": redis_restart, "api_kill": api_kill, "store_unavailable": store_unavailable,
    "persist_failpoint": persist_failpoint}


def schedule(kinds: tuple[str, ...], seconds: float) -> list[tuple[float, str]]:
    """When (seconds after the load starts) each fault is injected: spread over the first 80%
    of the run after a 10% warm-up, so the last one has time to settle."""
    if not kinds:
        return []
    start, span = seconds * 0.1, seconds * 0.7
    step = span / max(len(kinds) - 1, 1)
    return [(start + i * step, kind) for i, kind in enumerate(kinds)]
