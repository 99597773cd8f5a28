"""Unit tests of the pure parts of subscriptions and the processing engine: predicates, line
protocol rendering of Arrow batches, trigger specs, cron, LineBuilder, plugin return values,
row shapes, plugin loading and time limits, and the InfluxQL subscription statements."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from processing_engine.cron import CronError, CronSchedule
from processing_engine.line_builder import InvalidKeyError, InvalidLineError, InvalidMeasurementError, LineBuilder
from processing_engine.plugins import PluginLoader, PluginNotFound, PluginTimeout, call_in_thread
from processing_engine.responses import BadResponse, shape_response
from processing_engine.rows import query_rows, table_batches
from processing_engine.specs import PERSIST, REQUEST, SCHEDULE, WRITES, SpecError, parse_duration, parse_spec
from agents.subscriptions import _chunks, write_url
from persist.engine_catalog import Destination, Subscription, Trigger, TriggerSettings
from query_api.influxql import ast
from query_api.influxql.executor import execute_influxql
from query_api.influxql.parser import ParseError, parse_query
from query_api.influxql.source import MemorySource
from topics.line_protocol import parse_lp
from topics.line_protocol.render import render_lines, render_text
from topics.subscription_filter import PredicateError, evaluate, matching_rows, parse_predicate


def parsed(lp: bytes, table: str):
    result = parse_lp(lp, precision="ns", default_time=0)
    assert not result.errors, result.errors
    t = result.tables[table]
    return t.batch, {**{k: "tag" for k in t.tags}, **t.fields}


# ---- predicates ----------------------------------------------------------------------------

BATCH, KINDS = parsed(b"""cpu,host=a,dc=x usage=60,n=5i,ok=true,note="hi" 1
cpu,host=b usage=70,n=1i,ok=false 2
cpu,host=a usage=10,n=9i 3
cpu usage=99 4""", "cpu")
TAGS = {c for c, k in KINDS.items() if k == "tag"}


@pytest.mark.parametrize("text, expected", [
    ("host = 'a' AND usage > 50", [True, False, False, False]),
    ("host = 'a' OR usage > 50", [True, True, True, True]),
    ("host != 'a'", [False, True, False, True]),           # a missing tag is ''
    ("host = ''", [False, False, False, True]),
    ("host =~ /^[ab]$/", [True, True, True, False]),
    ("host !~ /a/", [False, True, False, True]),
    ("n >= 5", [True, False, True, False]),               # a missing field never matches
    ("n > 4.5 AND n < 9", [True, False, False, False]),
    ("ok = true", [True, False, False, False]),
    ("note = 'hi'", [True, False, False, False]),
    ("usage = 'x'", [False, False, False, False]),        # kinds differ: no match
    ("time > 2", [False, False, True, True]),
    ("(host = 'a' OR host = 'b') AND NOT_A_COLUMN = ''", [True, True, True, False]),
    ('"host" <> \'b\' and usage <= 60', [True, False, True, False]),
    ("", [True, True, True, True]),
])
def test_predicates_evaluate_like_influxql(text, expected):
    assert evaluate(parse_predicate(text), BATCH, TAGS).to_pylist() == expected


@pytest.mark.parametrize("text", ["host =", "host == 'a'", "= 'a'", "host =~ 'a'", "host = /a/",
                                  "host = 'a' AND", "(host = 'a'", "host = 'a')", "host ~ 'a'",
                                  "host = /(/"])
def test_bad_predicates_say_why(text):
    with pytest.raises(PredicateError):
        parse_predicate(text)


def test_matching_rows_filters_the_batch():
    assert matching_rows(parse_predicate("usage > 65"), BATCH, TAGS).num_rows == 2
    assert matching_rows(None, BATCH, TAGS) is BATCH


# ---- line protocol rendering ---------------------------------------------------------------


def test_rendered_lines_read_back_to_the_same_rows():
    lp = b"""m\\,x\\ y,host=a\\ b,dc=x\\=y f=1,s="q\\"u\\\\o",n=-3i,u=7u,b=t 123
m\\,x\\ y,host=b f=2.5 124
m\\,x\\ y s="only" 125
m\\,x\\ y,host=c f\\ k\\=x=1e-07,big=1e+20 126"""
    batch, kinds = parsed(lp, "m,x y")
    text = render_text("m,x y", batch, kinds)
    again, _ = parsed(text, "m,x y")
    assert set(again.column_names) == set(batch.column_names)
    assert query_rows(again) == query_rows(batch.select(again.column_names))
    assert text.split(b"\n")[1] == b"m\\,x\\ y,host=b f=2.5 124"


def test_render_tags_sorted_string_fields_quoted_and_internal_columns_dropped():
    batch = pa.table({"z": ["1"], "a": ["2"], "s": ["x y"], "v": [1.0],
                      "time": pa.array([5], pa.timestamp("ns")),
                      "__influent_ts": [1], "__influent_seq": [2]})
    kinds = {"z": "tag", "a": "tag", "s": "string", "v": "float", "time": "time"}
    assert render_lines("t", batch, kinds).to_pylist() == ['t,a=2,z=1 s="x y",v=1 5']


def test_render_skips_rows_without_fields_and_handles_empty():
    batch = pa.table({"host": ["a", "b"], "v": pa.array([None, 1], pa.int64())})
    assert render_text("t", batch, {"host": "tag", "v": "integer"}) == b"t,host=b v=1i"
    assert render_text("t", batch.slice(0, 0), {}) == b""


# ---- specs, durations, cron ----------------------------------------------------------------


@pytest.mark.parametrize("text, kind, table", [
    ("table:cpu", WRITES, "cpu"), ("all_tables", WRITES, None), ("persist:cpu", PERSIST, "cpu"),
    ("persist:all_tables", PERSIST, None), ("every:5m", SCHEDULE, None),
    ("cron:0 */5 * * * *", SCHEDULE, None), ("request:hello/world", REQUEST, None),
])
def test_trigger_specs(text, kind, table):
    spec = parse_spec(text)
    assert (spec.kind, spec.table) == (kind, table)


@pytest.mark.parametrize("text", ["", "table:", "every:", "every:5", "every:2y", "cron:* * *",
                                  "request:", "tables:cpu", "cron:61 * * * * *"])
def test_bad_specs_are_refused(text):
    with pytest.raises(SpecError):
        parse_spec(text)


def test_durations_like_humantime():
    assert parse_duration("10s") == 10 * 10**9
    assert parse_duration("1h 30min") == 5400 * 10**9
    assert parse_duration("2days") == 2 * 86400 * 10**9
    assert parse_duration("250ms") == 250 * 10**6


def test_every_is_aligned_to_the_epoch():
    spec = parse_spec("every:10s")
    after = datetime(2026, 1, 1, 0, 0, 3, 500_000, tzinfo=timezone.utc)
    assert spec.next_fire(after) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=timezone.utc)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("expr, after, expected", [
    ("*/15 * * * * *", utc(2026, 3, 1, 10, 0, 14), utc(2026, 3, 1, 10, 0, 15)),
    ("0 30 9 * * *", utc(2026, 3, 1, 9, 30, 0), utc(2026, 3, 2, 9, 30, 0)),
    ("0 0 9 * * MON-FRI", utc(2026, 3, 6, 10, 0, 0), utc(2026, 3, 9, 9, 0, 0)),  # Fri -> Mon
    ("0 0 0 * * 1", utc(2026, 3, 2, 0, 0, 0), utc(2026, 3, 8, 0, 0, 0)),  # 1 = Sunday
    ("0 0 12 29 FEB * *", utc(2026, 1, 1), utc(2028, 2, 29, 12, 0, 0)),
    ("5/20 * * * * *", utc(2026, 1, 1, 0, 0, 25), utc(2026, 1, 1, 0, 0, 45)),
    ("0 0 0 1 1 * 2030", utc(2026, 1, 1), utc(2030, 1, 1)),
    ("@hourly", utc(2026, 1, 1, 5, 59, 59), utc(2026, 1, 1, 6, 0, 0)),
])
def test_cron_with_seconds(expr, after, expected):
    assert CronSchedule.parse(expr).next_after(after) == expected


def test_cron_errors_and_the_end_of_time():
    for bad in ("* * * * *", "60 * * * * *", "* * * * * 0", "* * * * * * * *", "*/0 * * * * *"):
        with pytest.raises(CronError):
            CronSchedule.parse(bad)
    assert CronSchedule.parse("0 0 0 1 1 * 2030").next_after(utc(2031, 1, 1)) is None


# ---- LineBuilder ---------------------------------------------------------------------------


def test_line_builder_renders_as_influxdb3():
    line = (LineBuilder("cpu,x").tag("host", "a b,c=d\\").tag("dc", "x")
            .int64_field("n", -3).uint64_field("u", 7).float64_field("f", 2.0)
            .float64_field("g", 0.25).string_field("s", 'say "hi" \\o/').bool_field("b", False)
            .time_ns(123))
    assert line.build() == ('cpu\\,x,host=a\\ b\\,c\\=d\\\\,dc=x n=-3i,u=7u,f=2.0,g=0.25,'
                            's="say \\"hi\\" \\\\o/",b=f 123')
    assert LineBuilder("m").bool_field("ok", True).build() == "m ok=t"
    with pytest.raises(InvalidMeasurementError):
        LineBuilder("a b")
    with pytest.raises(InvalidKeyError):
        LineBuilder("m").tag("a=b", "x")
    with pytest.raises(InvalidLineError):
        LineBuilder("m").tag("a", "x").build()
    with pytest.raises(ValueError):
        LineBuilder("m").uint64_field("u", -1)
    clean = LineBuilder("cpu").tag("host", "a b,c=d\\e").string_field("s", 'q"\\').time_ns(1)
    result = parse_lp(clean.build().encode(), precision="ns", default_time=0)
    assert result.errors == []
    assert query_rows(result.tables["cpu"].batch) == [{"host": "a b,c=d\\e", "s": 'q"\\', "time": 1}]


# ---- request responses ---------------------------------------------------------------------


def test_responses_are_shaped_like_flask():
    r = shape_response({"a": 1})
    assert (r.status, r.body, r.headers["Content-Type"]) == (200, b'{"a": 1}', "application/json")
    r = shape_response("<b>hi</b>")
    assert r.headers["Content-Type"].startswith("text/html") and r.body == b"<b>hi</b>"
    r = shape_response(({"error": "x"}, 400))
    assert r.status == 400 and r.body == b'{"error": "x"}'
    r = shape_response(("ok", 201, {"X-A": "1"}))
    assert (r.status, r.headers["X-A"]) == (201, "1")
    r = shape_response(("ok", {"Content-Type": "text/plain"}))
    assert (r.status, r.headers["Content-Type"]) == (200, "text/plain")
    assert shape_response(iter(["a", b"b"])).body == b"ab"
    with pytest.raises(BadResponse):
        shape_response(None)
    with pytest.raises(BadResponse):
        shape_response(42)


# ---- rows ----------------------------------------------------------------------------------


def test_table_batches_hold_only_present_columns():
    batch, _ = parsed(b"cpu,host=a usage=1 10\ncpu usage=2,n=3i 11", "cpu")
    mem, _ = parsed(b"mem free=5u 12", "mem")
    got = table_batches([("cpu", batch), ("mem", mem), ("cpu", batch.slice(0, 1))])
    assert got == [{"table_name": "cpu", "rows": [{"host": "a", "usage": 1.0, "time": 10},
                                                  {"n": 3, "usage": 2.0, "time": 11},
                                                  {"host": "a", "usage": 1.0, "time": 10}]},
                   {"table_name": "mem", "rows": [{"free": 5, "time": 12}]}]


def test_query_rows_keep_every_column_with_int_times():
    table = pa.table({"host": pa.array(["a"]).dictionary_encode(),
                      "time": pa.array([7], pa.timestamp("ns")), "v": [None]})
    assert query_rows(table) == [{"host": "a", "time": 7, "v": None}]


# ---- subscriptions: records and destinations -----------------------------------------------


def test_records_round_trip_through_json():
    sub = Subscription("db", "s", (Destination.parse("kafka:t"), Destination.parse("http://h:1")),
                       "ANY", ("cpu",), "host = 'a'", created_ms=5)
    assert Subscription.from_json(sub.to_json()) == sub
    trig = Trigger("db", "t", "p.py", "every:1s", {"a": "b"}, TriggerSettings(error_behavior="retry"))
    assert Trigger.from_json(trig.to_json()) == trig
    assert Destination.parse({"kind": "kafka", "topic": "x"}).uri == "kafka:x"
    for bad in ("udp://h:1", "kafka:", "kafka:no spaces", {"kind": "http"}, "ftp://x",
                {"kind": "kafka", "topic": "a/b"}):
        with pytest.raises(ValueError):
            Destination.parse(bad)
    with pytest.raises(ValueError):
        TriggerSettings.from_api({"error_behavior": "explode"})


def test_write_urls_follow_influxdb_1x():
    assert write_url("http://h:9092", "db", "autogen") == "http://h:9092/write?rp=autogen&db=db"
    assert write_url("http://h/write?db=other", "db", "autogen") == "http://h/write?db=other"
    assert write_url("https://h/api/v3/write_lp", "d", "autogen") == "https://h/api/v3/write_lp?db=d"


def test_http_bodies_are_chunked_on_line_boundaries():
    assert _chunks([b"a" * 4, b"b" * 4, b"c" * 4], 10) == [b"aaaa\nbbbb", b"cccc"]


# ---- plugins -------------------------------------------------------------------------------


def test_plugins_load_per_trigger_and_reload_on_change(tmp_path):
    plugin = tmp_path / "p.py"
    plugin.write_text("STATE = []\ndef f():\n    STATE.append(1)\n    return LineBuilder('m').int64_field('n', len(STATE)).build()\n")
    loader = PluginLoader(str(tmp_path))
    assert loader.function("a", "p.py", "f")() == "m n=1i"
    assert loader.function("a", "p.py", "f")() == "m n=2i"
    assert loader.function("b", "p.py", "f")() == "m n=1i"  # its own globals
    time.sleep(0.01)
    plugin.write_text("def f():\n    return 'v2'\n")
    assert loader.function("a", "p.py", "f")() == "v2"
    with pytest.raises(AttributeError):
        loader.function("a", "p.py", "missing")
    for bad in ("nope.py", "../escape.py", "gh:examples/x.py"):
        with pytest.raises(PluginNotFound):
            loader.function("a", bad, "f")


def test_plugin_packages_are_imported(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "helpers.py").write_text("def name():\n    return 'helped'\n")
    (pkg / "__init__.py").write_text("from .helpers import name\ndef f():\n    return LineBuilder(name()).bool_field('x', True).build()\n")
    assert PluginLoader(str(tmp_path)).function("a", "pkg", "f")() == "helped x=t"


def test_calls_run_in_threads_with_a_time_limit():
    async def scenario():
        assert await call_in_thread(lambda: 41 + 1, 5) == 42
        with pytest.raises(ZeroDivisionError):
            await call_in_thread(lambda: 1 / 0, 5)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        with pytest.raises(PluginTimeout):
            await call_in_thread(lambda: time.sleep(0.5), 0.2)
        task.cancel()
        assert ticks > 5  # the loop kept running while the plugin slept

    asyncio.run(scenario())


# ---- InfluxQL subscription statements ------------------------------------------------------


class FakeHook:
    """An in-memory subscription store (the executor only needs the protocol)."""

    def __init__(self):
        self.subs: dict[tuple[str, str], tuple[str, str, str, str, list[str]]] = {}

    async def create_subscription(self, db, rp, name, mode, destinations):
        if db != "db":
            raise LookupError(f"database not found: {db}")
        if (db, name) in self.subs:
            raise ValueError("subscription already exists")
        self.subs[(db, name)] = (db, rp, name, mode, destinations)

    async def drop_subscription(self, db, rp, name):
        if self.subs.pop((db, name), None) is None:
            raise LookupError("subscription not found")

    async def list_subscriptions(self):
        return sorted(self.subs.values())


def test_influxql_subscription_statements():
    parsed_q = parse_query("CREATE SUBSCRIPTION \"s0\" ON \"db\".\"autogen\" DESTINATIONS ANY "
                           "'http://a:1', 'http://b:2'; DROP SUBSCRIPTION s0 ON db.autogen; "
                           "SHOW SUBSCRIPTIONS")
    assert parsed_q.statements == (
        ast.CreateSubscription("s0", "db", "autogen", "ANY", ("http://a:1", "http://b:2")),
        ast.DropSubscription("s0", "db", "autogen"), ast.ShowSubscriptions())
    with pytest.raises(ParseError, match="expected ALL, ANY"):
        parse_query("CREATE SUBSCRIPTION s ON db.autogen DESTINATIONS SOME 'x'")
    hook, source = FakeHook(), MemorySource()

    def run(q):
        return asyncio.run(execute_influxql(q, None, source, now_ns=0, subscriptions=hook))

    assert run("CREATE SUBSCRIPTION s0 ON db.autogen DESTINATIONS ALL 'http://h:1'") == \
        {"results": [{"statement_id": 0}]}
    assert run("CREATE SUBSCRIPTION s0 ON db.autogen DESTINATIONS ALL 'http://h:1'") == \
        {"results": [{"statement_id": 0, "error": "subscription already exists"}]}
    assert run("CREATE SUBSCRIPTION s0 ON nope.autogen DESTINATIONS ALL 'http://h:1'") == \
        {"results": [{"statement_id": 0, "error": "database not found: nope"}]}
    assert run("SHOW SUBSCRIPTIONS") == {"results": [{"statement_id": 0, "series": [
        {"name": "db", "columns": ["retention_policy", "name", "mode", "destinations"],
         "values": [["autogen", "s0", "ALL", ["http://h:1"]]]}]}]}
    assert run("DROP SUBSCRIPTION s0 ON db.autogen; SHOW SUBSCRIPTIONS") == \
        {"results": [{"statement_id": 0}, {"statement_id": 1}]}
    assert run("DROP SUBSCRIPTION s0 ON db.autogen")["results"][0]["error"] == "subscription not found"
    without = asyncio.run(execute_influxql("SHOW SUBSCRIPTIONS", None, source, now_ns=0))
    assert "not supported" in without["results"][0]["error"]


# ---- what triggers and subscriptions take from the topics ----------------------------------


def record(value: bytes, **headers: str):
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord("t", 0, 0, 0, 0, None, value, None, 0, len(value),
                          [(k, v.encode()) for k, v in headers.items()])


def test_on_write_triggers_skip_other_databases_tables_and_their_own_writes():
    from agents.triggers import persist_events, write_batches
    from topics.wire import encode_batch

    batch, _ = parsed(b"cpu,host=a usage=1 10", "cpu")
    data = encode_batch(batch)
    trig = Trigger("db", "t", "p.py", "all_tables")
    records = [record(data, database="db", table="cpu"),
               record(data, database="other", table="cpu"),
               record(data, database="db", table="cpu", origin="trigger:db/t"),
               record(data, database="db", table="cpu", origin="trigger:db/someone_else")]
    assert [len(b["rows"]) for b in write_batches(trig, parse_spec("all_tables"), records)] == [2]
    assert write_batches(trig, parse_spec("table:mem"), records) == []
    loopy = Trigger("db", "t", "p.py", "all_tables", settings=TriggerSettings(fire_on_own_writes=True))
    assert [len(b["rows"]) for b in write_batches(loopy, parse_spec("all_tables"), records)] == [3]
    events = [record(b'{"database": "db", "table": "cpu", "rows": 1}'),
              record(b'{"database": "db", "table": "mem", "rows": 2}')]
    assert [e["rows"] for e in persist_events(trig, parse_spec("persist:mem"), events)] == [2]


def test_delivery_units_follow_the_mode():
    from agents.subscriptions import delivery_units

    dests = (Destination.parse("kafka:a"), Destination.parse("http://h:1"))
    assert [u for u, _ in delivery_units(Subscription("db", "s", dests, "ALL"))] == ["0", "1"]
    assert delivery_units(Subscription("db", "s", dests, "ANY")) == [("any", dests)]


def test_every_trigger_kind_has_a_function_and_a_source():
    from processing_engine.specs import ACCEPTED, CLOCK, HTTP, KINDS, PERSISTED
    assert {k.source for k in KINDS.values()} <= {ACCEPTED, CLOCK, HTTP, PERSISTED}
    assert {text: (parse_spec(text).function, parse_spec(text).source) for text in
            ("all_tables", "persist:cpu", "every:5s", "request:x")} == {
        "all_tables": ("process_writes", ACCEPTED), "persist:cpu": ("process_persist", PERSISTED),
        "every:5s": ("process_scheduled_call", CLOCK), "request:x": ("process_request", HTTP)}
