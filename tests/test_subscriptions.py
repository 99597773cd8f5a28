"""Subscriptions end to end (real Kafka, Redis, worker and API processes, and a real HTTP
receiver started by the test): a predicate forwards exactly the matching lines to a Kafka topic
and to an HTTP receiver; a receiver that is away for a while loses nothing; InfluxQL
CREATE/SHOW/DROP SUBSCRIPTION; the JSON API, the CLI and the lag metric."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from urllib.parse import parse_qs

import pytest
from aiohttp import web

from influent.config import Settings
from influent.devstack import free_port
from tests.engine_harness import call, engine_stack, metric, new_db, write
from tests.harness import ROOT, read_topic, unique, wait_for
from topics.wire import header_dict

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000_000


class Receiver:
    """An HTTP server in its own thread that records what is POSTed to it, as Kapacitor or
    Telegraf's influxdb_listener would receive it."""

    def __init__(self, port: int):
        self.port = port
        self.requests: list[tuple[str, dict[str, list[str]], bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, parse_qs(request.query_string), await request.read()))
        return web.Response(status=204)

    def start(self) -> "Receiver":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._record)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        if self._thread and self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = self._loop = None

    def lines(self) -> list[str]:
        return [line for _, _, body in list(self.requests) for line in body.decode().split("\n") if line]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, redis_url, tmp_path_factory):
    yield from engine_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("subscriptions"), "sub")


def subscribe(settings: Settings, db: str, name: str, destination: dict, **kw) -> dict:
    resp = call(settings, "POST", "/api/v3/configure/subscription",
                json={"db": db, "name": name, "destination": destination, **kw})
    assert resp.status_code == 201, resp.text
    return resp.json()


PREDICATE = "host = 'a' AND usage > 50"
MIXED = [  # (line, matches PREDICATE on table cpu only)
    (f"cpu,host=a usage=60 {T0}", True),
    (f"cpu,host=a usage=40 {T0 + 1}", False),
    (f"cpu,host=b usage=90 {T0 + 2}", False),
    (f"cpu,host=a,dc=x usage=70,n=1i {T0 + 3}", True),
    (f"cpu usage=99 {T0 + 4}", False),
    (f"mem,host=a usage=99 {T0 + 5}", False),
]
EXPECTED = [f"cpu,host=a usage=60 {T0}", f"cpu,dc=x,host=a n=1i,usage=70 {T0 + 3}"]


def test_predicate_forwards_exactly_the_matching_lines_to_kafka(stack):
    settings = stack
    db = new_db(settings, "kafka")
    topic = unique("mirror.")
    subscribe(settings, db, "to_kafka", {"kind": "kafka", "topic": topic}, tables=["cpu"],
              predicate=PREDICATE)
    write(settings, db, "\n".join(line for line, _ in MIXED))
    write(settings, db, f"cpu,host=a usage=51 {T0 + 10}\ncpu,host=c usage=52 {T0 + 11}")
    expected = set(EXPECTED + [f"cpu,host=a usage=51 {T0 + 10}"])
    records: list = []

    def forwarded() -> set[str]:  # the whole topic, read again until it holds every line
        records[:] = asyncio.run(read_topic(settings, topic, timeout=10))
        lines = {line for r in records for line in r.value.decode().split("\n")}
        return lines if lines >= expected else set()

    # at least once: a line may come twice (after a rebalance), a non-matching one never
    assert wait_for(forwarded, timeout=60, what="the matching lines") == expected
    assert header_dict(records[0].headers) == {"db": db, "precision": "ns"}
    assert records[0].key == f"{db}/cpu".encode()
    wait_for(lambda: metric(settings, "influent_subscription_lag", db) == 0, what="no lag")
    assert metric(settings, "influent_subscription_delivered_lines_total", db) >= 3


def test_http_receiver_gets_the_matching_lines_and_loses_nothing_while_away(stack):
    settings = stack
    db = new_db(settings, "http")
    receiver = Receiver(free_port()).start()
    try:
        subscribe(settings, db, "to_http", {"kind": "http", "url": f"{receiver.url}/write?db=mirror"},
                  tables=["cpu"], predicate=PREDICATE)
        write(settings, db, "\n".join(line for line, _ in MIXED))
        wait_for(lambda: len(receiver.lines()) >= 2, timeout=60, what="the first delivery")
        assert set(receiver.lines()) == set(EXPECTED)
        path, query, _ = receiver.requests[0]
        assert path == "/write" and query == {"db": ["mirror"]}

        receiver.stop()
        later = [f"cpu,host=a usage={60 + i} {T0 + 100 + i}" for i in range(3)]
        for line in later:
            write(settings, db, f"{line}\ncpu,host=b usage=99 {T0 + 200}")
        wait_for(lambda: (metric(settings, "influent_subscription_delivery_failures_total", db) or 0) >= 2,
                 timeout=60, what="failed delivery attempts while the receiver is away")
        assert set(receiver.lines()) == set(EXPECTED)
        receiver.start()
        wait_for(lambda: set(receiver.lines()) >= set(later), timeout=60, what="the backlog")
        assert set(receiver.lines()) == set(EXPECTED + later)
        wait_for(lambda: metric(settings, "influent_subscription_lag", db) == 0, what="no lag")
    finally:
        receiver.stop()


def test_influxql_create_show_drop_subscription(stack):
    settings = stack
    db = new_db(settings, "iql")
    receiver = Receiver(free_port()).start()

    def influxql(q: str) -> dict:
        resp = call(settings, "POST", "/query", params={"q": q})
        assert resp.status_code == 200, resp.text
        return resp.json()

    try:
        created = influxql(f'CREATE SUBSCRIPTION "s0" ON "{db}"."autogen" DESTINATIONS ALL \'{receiver.url}\'')
        assert created == {"results": [{"statement_id": 0}]}
        again = influxql(f'CREATE SUBSCRIPTION "s0" ON "{db}"."autogen" DESTINATIONS ALL \'{receiver.url}\'')
        assert again["results"][0]["error"] == "subscription already exists"
        shown = influxql("SHOW SUBSCRIPTIONS")["results"][0]["series"]
        assert {"name": db, "columns": ["retention_policy", "name", "mode", "destinations"],
                "values": [["autogen", "s0", "ALL", [receiver.url]]]} in shown
        write(settings, db, f"cpu,host=z usage=1 {T0}")
        wait_for(lambda: receiver.lines(), timeout=60, what="a delivery")
        path, query, body = receiver.requests[0]
        assert (path, query, body) == ("/write", {"db": [db], "rp": ["autogen"]},
                                       f"cpu,host=z usage=1 {T0}".encode())
        assert influxql(f'DROP SUBSCRIPTION "s0" ON "{db}"."autogen"') == {"results": [{"statement_id": 0}]}
        missing = influxql(f'DROP SUBSCRIPTION "s0" ON "{db}"."autogen"')
        assert missing["results"][0]["error"] == "subscription not found"
        assert all(s["name"] != db for s in influxql("SHOW SUBSCRIPTIONS")["results"][0].get("series", []))
    finally:
        receiver.stop()


def test_subscription_management_api_and_cli(stack):
    settings = stack
    db = new_db(settings, "mgmt")
    made = subscribe(settings, db, "s1", {"kind": "kafka", "topic": "t1"}, tables=["cpu"],
                     predicate="usage > 1")
    assert made["destination"] == {"kind": "kafka", "topic": "t1"} and made["tables"] == ["cpu"]
    post = "/api/v3/configure/subscription"
    for body, status in (({"db": db, "name": "s1", "destination": {"kind": "kafka", "topic": "t"}}, 409),
                         ({"db": db, "name": "s2", "destination": {"kind": "kafka", "topic": "t"},
                           "predicate": "usage >"}, 400),
                         ({"db": db, "name": "s2", "destination": {"kind": "udp", "url": "x"}}, 400),
                         ({"db": unique("nodb"), "name": "s2",
                           "destination": {"kind": "kafka", "topic": "t"}}, 404)):
        resp = call(settings, "POST", post, json=body)
        assert resp.status_code == status, (body, resp.text)
    base = [sys.executable, "-m", "influent.cli", "--http-bind", settings.http_bind, "subscription"]

    def cli(*args: str) -> str:
        done = subprocess.run(base + list(args), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("create", "--db", db, "--name", "s3", "--url", "http://127.0.0.1:1/write", "--where", "host = 'a'")
    listed = cli("list", "--db", db)
    assert "s1" in listed and "s3" in listed and "host = 'a'" in listed
    assert [s["name"] for s in call(settings, "GET", post, params={"db": db}).json()] == ["s1", "s3"]
    cli("delete", "--db", db, "--name", "s3")
    assert call(settings, "DELETE", post, params={"db": db, "name": "s1"}).status_code == 200
    assert call(settings, "DELETE", post, params={"db": db, "name": "s1"}).status_code == 404
    assert call(settings, "GET", post, params={"db": db}).json() == []
