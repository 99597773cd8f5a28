"""Helpers shared by the subscription and trigger tests: one worker and one API per module,
and small real HTTP calls against the API."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx

from influent.config import Settings
from influent.devstack import free_port
from tests.harness import sql, start_api, start_worker, unique


def engine_stack(kafka_bootstrap: str, redis_url: str, state_dir: Path, prefix: str,
                 **overrides) -> Iterator[Settings]:
    """Run a worker and the API on a private topic prefix (a module fixture's body)."""
    settings = Settings(state_dir=state_dir, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                        topic_prefix=unique(prefix) + ".", partitions=2,
                        http_bind=f"127.0.0.1:{free_port()}", default_db="d", **overrides)
    worker = start_worker(settings, "w1", free_port())
    api = start_api(settings)
    try:
        yield settings
    finally:
        api.stop()
        worker.stop()


def call(settings: Settings, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, settings.http_url + path, timeout=30, **kw)


def write(settings: Settings, db: str, lp: str) -> None:
    resp = call(settings, "POST", "/api/v3/write_lp", params={"db": db, "precision": "ns"},
                content=lp.encode())
    assert resp.status_code == 204, resp.text


def new_db(settings: Settings, prefix: str) -> str:
    db = unique(prefix)
    assert call(settings, "POST", "/api/v3/configure/database", json={"db": db}).status_code == 200
    return db


def rows(settings: Settings, db: str, q: str) -> list[dict]:
    """Result rows; [] while the database or table does not exist yet."""
    resp = sql(settings, db, q)
    if resp.status_code == 404 or (resp.status_code == 400 and "not found" in resp.text):
        return []
    assert resp.status_code == 200, resp.text
    return resp.json()


def metric(settings: Settings, name: str, db: str) -> float | None:
    """Sum of a metric's samples for a database on the API's /metrics (None: no sample)."""
    found = [float(v) for v in re.findall(rf'^{name}{{[^}}]*db="{db}"[^}}]*}} (\S+)$',
                                          call(settings, "GET", "/metrics").text, re.M)]
    return sum(found) if found else None
