"""Telegraf JSON -> line protocol (pure): shapes, types, timestamps, errors named by element."""
from __future__ import annotations

import orjson
import pytest

from topics.line_protocol import LineError, parse_lp
from topics.telegraf_json import is_json_message, read_document, to_line_protocol


def render(doc: object, precision: str = "s", known=None):
    return to_line_protocol(read_document(orjson.dumps(doc)), precision, known)


def test_batch_renders_one_line_per_metric_with_nanosecond_times():
    out = render({"metrics": [
        {"name": "docker", "tags": {"host": "raynor"}, "fields": {"n_images": 660, "up": True},
         "timestamp": 1458229140},
        {"name": "docker", "tags": {"host": "a b"}, "fields": {"msg": 'say "hi"'}, "timestamp": 1},
    ]})
    assert out.errors == []
    assert out.body.decode().split("\n") == [
        "docker,host=raynor n_images=660.0,up=true 1458229140000000000",
        'docker,host=a\\ b msg="say \\"hi\\"" 1000000000',
    ]
    assert out.paths == ["metrics[0]", "metrics[1]"]


def test_single_metric_and_array_shapes():
    assert render({"name": "m", "fields": {"v": 1}, "timestamp": 2}).paths == ["metric"]
    assert render([{"name": "m", "fields": {"v": 1}}]).paths == ["[0]"]
    with pytest.raises(ValueError, match="invalid JSON"):
        read_document(b"{nope")
    with pytest.raises(ValueError, match="expected a metric"):
        read_document(b"3")


def test_integers_stay_integers_where_the_catalog_says_so():
    doc = {"name": "m", "fields": {"count": 5, "big": 7, "ratio": 5}, "timestamp": 1}
    out = render(doc, known={"m": {"count": "integer", "big": "uinteger", "ratio": "float"}})
    assert out.body == b"m count=5i,big=7u,ratio=5.0 1000000000"
    # a fraction on an integer column stays a float: the catalog check rejects it later
    assert render({"name": "m", "fields": {"count": 1.5}}, known={"m": {"count": "integer"}}
                  ).body == b"m count=1.5"


@pytest.mark.parametrize("precision, ts, ns", [
    ("s", 1458229140, 1458229140_000000000), ("ms", 1458229140123, 1458229140123000000),
    ("us", 1458229140123456, 1458229140123456000), ("ns", 1458229140123456789, 1458229140123456789),
    ("auto", 1458229140, 1458229140_000000000), ("auto", 1458229140123, 1458229140123000000),
    ("auto", 1458229140123456789, 1458229140123456789), ("s", 1.5, 1_500_000_000),
    ("s", "2016-03-17T15:39:00.123456789Z", 1458229140123456789),
    ("s", "2016-03-17T16:39:00+01:00", 1458229140_000000000),
])
def test_timestamp_units(precision, ts, ns):
    out = render({"name": "m", "fields": {"v": 1}, "timestamp": ts}, precision)
    assert out.body == f"m v=1.0 {ns}".encode()


def test_tags_nulls_and_missing_timestamp():
    out = render({"name": "m", "tags": {"a": 1, "b": True, "c": None, "d": ""},
                  "fields": {"v": 2.5, "gone": None}})
    assert out.body == b"m,a=1,b=true v=2.5"


def test_bad_metrics_are_named_and_the_rest_kept():
    out = render({"metrics": [
        {"name": "m", "fields": {"v": 1}, "timestamp": 1},
        {"name": "m", "fields": {"v": {"nested": 1}}, "timestamp": 2},
        {"fields": {"v": 1}},
        {"name": "m", "fields": {}},
        "text",
        {"name": "m", "fields": {"v": 1}, "timestamp": "yesterday"},
        {"name": "m", "fields": {"time": 1}, "timestamp": 7},
    ]})
    assert out.body.decode().split("\n") == ["m v=1.0 1000000000", "", "", "", "", "",
                                             "m time=1.0 7000000000"]
    reasons = {e.line: e.reason for e in out.errors}
    assert reasons[2].startswith("metrics[1]: field 'v' holds an object")
    assert reasons[3].startswith('metrics[2]: "name" must be')
    assert reasons[4] == "metrics[3]: a metric needs at least one field"
    assert reasons[5] == "metrics[4]: a metric must be a JSON object"
    assert reasons[6].startswith('metrics[5]: "timestamp"')
    # what the line protocol checks find comes back in JSON terms
    parsed = parse_lp(out.body, precision="ns")
    named = out.in_json_terms(parsed.errors)
    last = [e for e in named if e.line == 7]
    assert len(last) == 1 and last[0].reason.startswith("metrics[6]: ")
    assert orjson.loads(last[0].original) == {"name": "m", "fields": {"time": 1}, "timestamp": 7}
    assert [e.line for e in named] == sorted(e.line for e in named)
    assert isinstance(named[0], LineError)


def test_content_type_or_first_byte_says_json():
    assert is_json_message({"content-type": "application/json"}, b"cpu v=1")
    assert is_json_message({}, b'  {"name": "m"}')
    assert not is_json_message({"content-type": "text/plain"}, b'{x v=1')
    assert not is_json_message({}, b"cpu v=1")


def test_a_string_with_a_newline_does_not_shift_the_elements_named_after_it():
    out = to_line_protocol(read_document(orjson.dumps({"metrics": [
        {"name": "m", "fields": {"s": "one\ntwo"}, "timestamp": 1},
        {"name": "m", "fields": {"s": "x"}, "timestamp": 2},
        {"name": "m", "fields": {"time": 1}, "timestamp": 3},
    ]})), "s")
    parsed = parse_lp(out.body, precision="ns")
    assert parsed.tables["m"].batch.num_rows == 2
    named = out.in_json_terms(parsed.errors)
    assert [(e.line, e.reason.split(":")[0]) for e in named] == [(3, "metrics[2]")]
    assert orjson.loads(named[0].original)["timestamp"] == 3
