"""Line protocol parser: the shared test vectors, the rules, and parity of both parsing paths.

Pure unit tests (no services). ``_vectorise`` forces a path: True takes the columnar passes even
for tiny inputs, False the exact per-line parser; both must agree on everything.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from benchmarks.tsbs import generate_lines
from topics.line_protocol import columnar as lp_columnar
from topics.line_protocol import (ARROW_TYPES, LineError, ParseResult, format_field_value, parse_lp,
                                  parse_lp_main, parse_lp_records, serialize_point)

CASES_FILE = Path(__file__).resolve().parent / "data" / "line_protocol" / "cases.jsonl"
PATHS = [pytest.param(True, id="vectorised"), pytest.param(False, id="per-line")]


@pytest.fixture(params=["few-series", "many-series-small-blocks"])
def series_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with distinct series keys split in Python (few) and with Arrow passes (many);
    the latter also with small CSV blocks, so that every column arrives in many chunks."""
    if request.param != "few-series":
        monkeypatch.setattr(lp_columnar, "FEW_SERIES", 0)
        monkeypatch.setattr(lp_columnar, "_CSV_BLOCK_BYTES", 1 << 12)
    return request.param


def _load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()]


CASES = _load_cases()


def _case_id(case: dict) -> str:
    return case["source"].rsplit("#", 1)[-1][:40]


def records_from_result(result: ParseResult) -> list[dict]:
    """parse_lp's tables and errors as parse_lp_records would print them."""
    out: list[dict] = [{"line": e.line, "error": e.reason} for e in result.errors]
    for table in result.tables.values():
        rows = table.batch.drop_columns(["time"]).to_pylist()
        times = table.batch.column("time").view(pa.int64()).to_pylist()
        for row, ts, line in zip(rows, times, table.lines.to_pylist()):
            out.append({
                "line": line, "measurement": table.name,
                "tags": {k: row[k] for k in table.tags if row[k] is not None},
                "fields": {k: {"type": t, "value": row[k]}
                           for k, t in table.fields.items() if row[k] is not None},
                "timestamp": ts,
            })
    return sorted(out, key=lambda r: r["line"])


def same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def assert_point(expected: dict, record: dict) -> None:
    assert "error" not in record, record
    for key in ("measurement", "tags", "timestamp"):
        if expected.get(key) is not None:
            assert record[key] == expected[key], key
    if expected.get("fields") is not None:
        assert record["fields"].keys() == expected["fields"].keys()
        for name, want in expected["fields"].items():
            got = record["fields"][name]
            assert got["type"] == want["type"], name
            want_value = float(want["value"]) if want["type"] == "float" else want["value"]
            assert same_value(got["value"], want_value), (name, got, want)


# ---------------------------------------------------------------------------------------------
# The shared test vectors


def test_cases_file_is_present() -> None:
    assert CASES_FILE.exists(), f"missing test vectors: {CASES_FILE}"
    assert len(CASES) > 100


@pytest.mark.parametrize("vectorise", PATHS)
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case(case: dict, vectorise: bool) -> None:
    data = case["input"].encode()
    precision = case.get("precision", "ns")
    default_time = case.get("default_time")
    records = parse_lp_records(data, precision=precision, default_time=default_time, _vectorise=vectorise)

    assert all("error" not in r for r in records) == case["valid"], records
    expected = case.get("lines")
    if expected is None and case.get("measurement") is not None:
        expected = [case]
    if expected is not None:
        assert len(records) == len(expected), records
        for want, got in zip(expected, records):
            assert ("error" not in got) == want.get("valid", True), got
            if "error" not in got and "note" not in want:
                assert_point(want, got)
            elif "error" not in got:
                assert_point({k: want.get(k) for k in ("measurement", "tags", "fields", "timestamp")}, got)

    # parse_lp carries the same values in its batches (a fixed default time for comparability).
    fixed = default_time if default_time is not None else 1_700_000_000_123_456_789
    result = parse_lp(data, precision=precision, default_time=fixed, _vectorise=vectorise)
    assert records_from_result(result) == parse_lp_records(data, precision=precision, default_time=fixed,
                                                           _vectorise=vectorise)
    assert result.points == sum(1 for r in records if "error" not in r)
    assert [e.line for e in result.errors] == sorted(e.line for e in result.errors)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_case_repeated_parity(case: dict, series_path: str) -> None:
    """Each vector repeated into a large message: the columnar passes agree with the exact parser."""
    text = case["input"]
    data = "\n".join([text] * 40).encode()
    kwargs = dict(precision=case.get("precision", "ns"), default_time=case.get("default_time"))
    fast = parse_lp_records(data, _vectorise=True, **kwargs)
    assert fast == parse_lp_records(data, _vectorise=False, **kwargs)


# ---------------------------------------------------------------------------------------------
# Output shape


def test_batch_layout_and_nulls() -> None:
    data = b"m,b=2,a=1 z=1i,y=\"s\" 10\nm,a=3 x=true,y=\"t\" 20\nother f=1u 30\n"
    result = parse_lp(data)
    table = result.tables["m"]
    assert table.name == "m"
    assert table.tags == ["a", "b"]
    assert table.fields == {"x": "boolean", "y": "string", "z": "integer"}
    assert table.batch.schema.names == ["a", "b", "x", "y", "z", "time"]
    assert table.batch.schema.field("time").type == pa.timestamp("ns")
    for name, kind in table.fields.items():
        assert table.batch.schema.field(name).type == ARROW_TYPES[kind]
    assert table.batch.column("b").to_pylist() == ["2", None]
    assert table.batch.column("x").to_pylist() == [None, True]
    assert table.lines.type == pa.int32() and table.lines.to_pylist() == [1, 2]
    assert result.tables["other"].batch.column("f").type == pa.uint64()
    assert result.points == 3 and result.errors == []


def test_rows_keep_input_order_across_shapes(series_path: str) -> None:
    lines = [f"m,h=h{i % 3} v={i}i {i}" if i % 2 else f"m v={i}i,w={i}.5 {i}" for i in range(300)]
    result = parse_lp("\n".join(lines).encode(), _vectorise=True)
    table = result.tables["m"]
    assert table.lines.to_pylist() == list(range(1, 301))
    assert table.batch.column("v").to_pylist() == list(range(300))
    assert table.batch.column("w").to_pylist()[:3] == [0.5, None, 2.5]


# ---------------------------------------------------------------------------------------------
# Rules within a line and between lines


@pytest.mark.parametrize("vectorise", PATHS)
def test_type_conflict_between_lines(vectorise: bool) -> None:
    data = b"m v=1i 1\nm v=1.5 2\nm v=2i 3\nm,t=x v=3i 4\n"
    result = parse_lp(data, _vectorise=vectorise)
    assert [e.line for e in result.errors] == [2]
    reason = result.errors[0].reason
    assert "'v'" in reason and "integer" in reason and "float" in reason and "line 1" in reason
    assert result.errors[0].original == "m v=1.5 2"
    assert result.tables["m"].batch.column("v").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("vectorise", PATHS)
def test_kind_conflict_tag_vs_field(vectorise: bool) -> None:
    data = b"m,host=a v=1 1\nm host=\"b\",v=2 2\nm,v=x w=1 3\n"
    result = parse_lp(data, _vectorise=vectorise)
    assert [e.line for e in result.errors] == [2, 3]
    assert "'host' is a tag" in result.errors[0].reason and "string field" in result.errors[0].reason
    assert "'v' is a float field" in result.errors[1].reason and "as a tag" in result.errors[1].reason


@pytest.mark.parametrize("vectorise", PATHS)
def test_rejected_line_fixes_nothing(vectorise: bool) -> None:
    # line 1 is bad syntax; line 2 conflicts on a, so its b=1i fixes nothing; line 3 fixes b as float
    data = b"m a=1i,b=1.5 1 x\nm a=1i 2\nm a=1.5,b=1i 3\nm b=2.5 4\n"
    result = parse_lp(data, _vectorise=vectorise)
    assert [e.line for e in result.errors] == [1, 3]
    table = result.tables["m"]
    assert table.fields == {"a": "integer", "b": "float"}
    assert table.lines.to_pylist() == [2, 4]


@pytest.mark.parametrize("vectorise", PATHS)
def test_conflict_reason_is_the_one_holding_at_each_line(vectorise: bool) -> None:
    block = ["m h=true", "m h=1.5,f=1.5", "m g=1i,f=\"s\"", "m h=1.5,f=1.5"]
    data = "\n".join(block * (30 if vectorise else 1)).encode()
    errors = parse_lp(data, _vectorise=vectorise).errors
    assert "'h'" in errors[0].reason and "line 1" in errors[0].reason and errors[0].line == 2
    assert "'f'" in errors[1].reason and "line 3" in errors[1].reason and errors[1].line == 4


@pytest.mark.parametrize("vectorise", PATHS)
@pytest.mark.parametrize("line, valid, fragment", [
    ("m,a=1,a=2 v=1", False, "duplicate tag key 'a'"),
    ("m,a=1,a=1 v=1", False, "duplicate tag key 'a'"),
    ("m v=1i,v=2i", True, None),
    ("m v=1i,v=2.5", False, "field 'v' is given twice"),
    ("m time=1", False, "field key 'time'"),
    ("m,time=x v=1", False, "tag key 'time'"),
    ("m,a=1 a=1", False, "'a' is used as both a tag and a field"),
    ("m v=abc", False, "invalid field value 'abc' for field 'v'"),
    ("m v=1.2.3", False, "invalid field value '1.2.3' for field 'v'"),
    ("m v=99999999999999999999i", False, "out of range"),
    ("m,a= v=1", False, "expected value for tag 'a'"),
])
def test_line_rules(line: str, valid: bool, fragment: str | None, vectorise: bool) -> None:
    data = "\n".join([line] * (60 if vectorise else 1)).encode()
    records = parse_lp_records(data, _vectorise=vectorise)
    if valid:
        assert all("error" not in r for r in records)
        assert records[0]["fields"]["v"] == {"type": "integer", "value": 2}
    else:
        assert all(fragment in r["error"] for r in records), records[0]


# ---------------------------------------------------------------------------------------------
# Syntax details


@pytest.mark.parametrize("vectorise", PATHS)
def test_escapes_everywhere(vectorise: bool) -> None:
    line = r'my\ meas\,x,t\ k\=1=v\,a\ l\=x f\ k\,1=" q\"uote \\ back"'
    records = parse_lp_records((line + " 5\n") .encode() * 30, _vectorise=vectorise)
    assert records[0] == {"line": 1, "measurement": "my meas,x", "tags": {"t k=1": "v,a l=x"},
                          "fields": {"f k,1": {"type": "string", "value": ' q"uote \\ back'}}, "timestamp": 5}
    assert len(records) == 30 and all(r == dict(records[0], line=i + 1) for i, r in enumerate(records))


@pytest.mark.parametrize("vectorise", PATHS)
def test_quoted_newline_keeps_physical_line_numbers(vectorise: bool) -> None:
    data = b'm s="a\nb" 1\nm s="c" 2\n# comment\n\nm s="d,e=f g" 3\n' * 20
    records = parse_lp_records(data, _vectorise=vectorise)
    assert [r["line"] for r in records[:3]] == [1, 3, 6]
    assert [r["fields"]["s"]["value"] for r in records[:3]] == ["a\nb", "c", "d,e=f g"]
    assert len(records) == 60 and all("error" not in r for r in records)


@pytest.mark.parametrize("vectorise", PATHS)
def test_crlf_and_whitespace(vectorise: bool) -> None:
    data = b"m v=1 1\r\n  m v=2 2\r\n\tm v=3   3  \r\n\r\nm  v=4 4\r\n" * 20
    records = parse_lp_records(data, _vectorise=vectorise)
    assert all("error" not in r for r in records)
    assert [r["fields"]["v"]["value"] for r in records[:4]] == [1.0, 2.0, 3.0, 4.0]
    assert [r["line"] for r in records[:4]] == [1, 2, 3, 5]


@pytest.mark.parametrize("vectorise", PATHS)
def test_invalid_utf8_is_a_line_error(vectorise: bool) -> None:
    data = b"m v=1 1\nm,t=\xff\xfe v=2 2\nm v=3 3\n" * 30
    result = parse_lp(data, _vectorise=vectorise)
    assert [e.line for e in result.errors] == list(range(2, 91, 3))
    assert all("UTF-8" in e.reason for e in result.errors)
    assert result.points == 60


@pytest.mark.parametrize("vectorise", PATHS)
def test_all_types_and_boolean_spellings(vectorise: bool) -> None:
    spellings = ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
    lines = [f"m b={s},i=-7i,u=7u,f=-1.5e-3,s=\"x\" {n}" for n, s in enumerate(spellings)]
    result = parse_lp("\n".join(lines * 20).encode(), _vectorise=vectorise)
    batch = result.tables["m"].batch
    assert batch.column("b").to_pylist()[:10] == [True] * 5 + [False] * 5
    assert batch.column("i").to_pylist()[0] == -7 and batch.column("u").to_pylist()[0] == 7
    assert batch.column("f").to_pylist()[0] == -1.5e-3 and batch.column("s").to_pylist()[0] == "x"


@pytest.mark.parametrize("vectorise", PATHS)
@pytest.mark.parametrize("token", ["+1", ".5", "1.", "-.5", "1.e5", "inf", "nan", "NaN", "0x10", "1e", "--1",
                                   "1_0", "1,", "t1", "\"a\"b", "1i1", "-1u", "1.5i"])
def test_float_like_tokens_arrow_accepts_but_lp_rejects(token: str, vectorise: bool) -> None:
    data = "\n".join(["m v=1.5 1"] * 30 + [f"m v={token} 2"]).encode()
    records = parse_lp_records(data, _vectorise=vectorise)
    assert "error" in records[-1], records[-1]
    assert all("error" not in r for r in records[:-1])


@pytest.mark.parametrize("vectorise", PATHS)
def test_timestamps_edge_values(vectorise: bool) -> None:
    lines = ["m v=1 -1", "m v=1 9223372036854775807", "m v=1 -9223372036854775808",
             "m v=1 9223372036854775808", "m v=1 0x10", "m v=1 +5", "m v=1 0005"]
    records = parse_lp_records("\n".join(lines * 10).encode(), _vectorise=vectorise)
    assert [r.get("timestamp") for r in records[:7]] == [-1, 2**63 - 1, -2**63, None, None, None, 5]
    assert ["error" in r for r in records[:7]] == [False, False, False, True, True, True, False]


# ---------------------------------------------------------------------------------------------
# Precision and time


@pytest.mark.parametrize("precision, ts, expected", [
    ("ns", 1, 1), ("n", 1, 1), ("nanosecond", 1, 1),
    ("us", 1, 1_000), ("u", 1, 1_000), ("microsecond", 1, 1_000),
    ("ms", 1, 1_000_000), ("millisecond", 1, 1_000_000),
    ("s", 1, 1_000_000_000), ("second", 1, 1_000_000_000),
    ("auto", 1_700_000_000, 1_700_000_000_000_000_000),
    ("auto", 1_700_000_000_123, 1_700_000_000_123_000_000),
    ("auto", 1_700_000_000_123_456, 1_700_000_000_123_456_000),
    ("auto", 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
    ("auto", -4_999_999_999, -4_999_999_999_000_000_000),
    ("auto", 0, 0),
])
@pytest.mark.parametrize("vectorise", PATHS)
def test_precision(precision: str, ts: int, expected: int, vectorise: bool) -> None:
    data = "\n".join([f"m v=1 {ts}"] * 40).encode()
    records = parse_lp_records(data, precision=precision, _vectorise=vectorise)
    assert {r["timestamp"] for r in records} == {expected}


@pytest.mark.parametrize("vectorise", PATHS)
def test_precision_overflow_is_a_line_error(vectorise: bool) -> None:
    data = "\n".join(["m v=1 9300000000", "m v=1 9200000000"] * 20).encode()
    result = parse_lp(data, precision="s", _vectorise=vectorise)
    assert [e.line for e in result.errors] == list(range(1, 41, 2))
    assert "out of range" in result.errors[0].reason
    assert result.tables["m"].batch.column("time").view(pa.int64()).to_pylist()[0] == 9_200_000_000 * 10**9


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        parse_lp(b"m v=1", precision="weeks")


@pytest.mark.parametrize("vectorise", PATHS)
def test_missing_timestamp_defaults(vectorise: bool) -> None:
    data = b"m v=1\n" * 50
    records = parse_lp_records(data, _vectorise=vectorise)
    assert {r["timestamp"] for r in records} == {None}
    records = parse_lp_records(data, precision="ms", default_time=1_234_567_891, _vectorise=vectorise)
    assert {r["timestamp"] for r in records} == {1_234_000_000}
    before = time.time_ns()
    result = parse_lp(data, precision="s", _vectorise=vectorise)
    after = time.time_ns()
    stamps = set(result.tables["m"].batch.column("time").view(pa.int64()).to_pylist())
    assert len(stamps) == 1
    (stamp,) = stamps
    assert stamp % 1_000_000_000 == 0 and before - 10**9 < stamp <= after


# ---------------------------------------------------------------------------------------------
# Parity of both paths on realistic and hostile messages


def test_tsbs_parity(series_path: str) -> None:
    data = ("\n".join(generate_lines(hosts=50, hours=0.05, seed=7)) + "\n").encode()
    fast = parse_lp(data, _vectorise=True)
    slow = parse_lp(data, _vectorise=False)
    assert fast.points == slow.points == data.count(b"\n")
    assert fast.errors == slow.errors == []
    for name, table in slow.tables.items():
        assert fast.tables[name].batch.equals(table.batch)
        assert fast.tables[name].lines.equals(table.lines)


MIXED = [
    "cpu,host=a,region=eu usage=1.5,idle=98i 1000",
    "cpu,host=b,region=eu usage=2.5,idle=97i 1000",
    "mem,host=a free=1024u,used=3.5e3 1000",
    "cpu,host=a usage=3,idle=96i",
    "# a comment",
    "",
    "disk,host=a,path=/ used_percent=55.1,ok=true 1000",
    'log,host=a msg="hello" 1000',
    'log,host=a msg="hello, world" 1000',
    'log,host=a msg="multi\nline" 1000',
    r"esc\ aped,t\,k=v\ 1 f=1 1000",
    "cpu,host=c,region=us usage=bad 1000",
    "cpu,host=c,region=us usage=1i 1000",
    "cpu,region=us,host=d usage=4.5,idle=95i 1000",
    "cpu,host=e usage=5.5,idle=94i,extra=\"x\" 1000",
    "  indented v=1 1000",
    "cpu,host=f,region=eu usage=6.5,idle=93i 1000 trailing",
    "weird=meas,t=1 v=1 1000",
    "cpu,host=g,region=eu usage=7.5,idle=92i -5",
    "cpu,host=\xe9t\xe9,region=eu usage=8.5,idle=91i 1000",
]


def _random_line(rng: random.Random) -> str:
    """Mostly plain lines of a few shapes, with a sprinkle of every kind of trouble."""
    values = ["1", "1.5", "-2", "3i", "4u", "t", "FALSE", '"s"', '""', "1e5", "-0", "007", "+1", ".5",
              "1.", "nan", "x", "1ii", "-1u", "99999999999999999999i", '"a b"', '"a,b"', '"q\\"q"']
    tag_values = ["a", "b=c", "x y", "", "é", "a\\,b", "#", '"q"']
    keys = ["f", "g", "time", "t", "a,b", "k=", "", "é"]
    if rng.random() < 0.05:
        return rng.choice(["", "# comment", "   ", "\t", "m v=1\r"])
    measurement = rng.choice(["m", "cpu", "m=x", "m\\ n", "", "#c", " m"]) if rng.random() < 0.1 else \
        rng.choice(["m", "cpu"])
    tags = "".join(f",{rng.choice(['t', 'u', 'host'])}="
                   f"{rng.choice(tag_values) if rng.random() < 0.1 else 'v' + str(rng.randrange(300))}"
                   for _ in range(rng.randrange(3)))
    fields = ",".join(f"{rng.choice(keys) if rng.random() < 0.05 else rng.choice(['f', 'g', 'h'])}="
                      f"{rng.choice(values) if rng.random() < 0.15 else rng.choice(['1.5', '2', '3.25'])}"
                      for _ in range(rng.randrange(1, 4)))
    stamp = rng.choice(["", " 123", " -5", " 99999999999999999999", "  7", " 1 2"]) if rng.random() < 0.1 \
        else rng.choice(["", " 1000"])
    return f"{measurement}{tags} {fields}{stamp}"


@pytest.mark.parametrize("seed", range(4))
def test_random_large_messages_parity(seed: int, series_path: str) -> None:
    rng = random.Random(seed)
    for _ in range(3):
        n = rng.choice([300, 2000])
        if rng.random() < 0.5:   # one template with a few odd lines
            lines = [f"cpu,host=h{i % rng.choice([5, 300])},dc=d{i % 3} a={i}.5,b={i}i {i}" for i in range(n)]
            for _ in range(rng.randrange(6)):
                lines[rng.randrange(n)] = _random_line(rng)
        else:
            lines = [_random_line(rng) for _ in range(n)]
        data = "\n".join(lines).encode()
        assert parse_lp_records(data, _vectorise=True) == parse_lp_records(data, _vectorise=False)


def test_mixed_message_parity(series_path: str) -> None:
    data = ("\n".join(MIXED * 25)).encode()
    fast = parse_lp_records(data, _vectorise=True)
    slow = parse_lp_records(data, _vectorise=False)
    assert fast == slow
    assert any("error" in r for r in fast) and sum("error" not in r for r in fast) > 300


# ---------------------------------------------------------------------------------------------
# CLI helper and serialisation


def test_parse_lp_main() -> None:
    out, status = parse_lp_main(b"m,t=a v=1i 5\n\nbad\n", "ns", None)
    assert status == 1
    assert [orjson.loads(line) for line in out] == [
        {"line": 1, "measurement": "m", "tags": {"t": "a"},
         "fields": {"v": {"type": "integer", "value": 1}}, "timestamp": 5},
        {"line": 3, "error": orjson.loads(out[1])["error"]},
    ]
    out, status = parse_lp_main(b"m v=1\n", "s", 1_500_000_000_123)
    assert status == 0 and orjson.loads(out[0])["timestamp"] == 1_500_000_000_000


def test_serialize_point_escapes_and_round_trips() -> None:
    fields = {"f k,=": ("string", 'a "q" \\ b\nc'), "i": ("integer", -5), "u": ("uinteger", 2**64 - 1),
              "b": True, "x": 1.5e-300, "n": 3}
    text = serialize_point("m e,as", {"t k=": "v,a l", "a": "1"}, fields, 42)
    assert text.startswith(r"m\ e\,as,a=1,t\ k\==v\,a\ l ")
    (record,) = parse_lp_records(text.encode())
    assert record["measurement"] == "m e,as" and record["tags"] == {"a": "1", "t k=": "v,a l"}
    assert record["fields"]["f k,="] == {"type": "string", "value": 'a "q" \\ b\nc'}
    assert record["fields"]["u"]["value"] == 2**64 - 1 and record["fields"]["n"]["type"] == "integer"
    assert record["timestamp"] == 42


@pytest.mark.parametrize("args", [
    ("#m", {}, {"v": 1.0}), ("m", {}, {}), ("m", {"": "x"}, {"v": 1.0}), ("m", {"t": "x\\"}, {"v": 1.0}),
    ("m", {}, {"v": float("nan")}), ("m", {}, {"v": ("uinteger", -1)}), ("m\x00", {}, {"v": 1.0}),
])
def test_serialize_point_rejects_what_lp_cannot_carry(args: tuple) -> None:
    with pytest.raises(ValueError):
        serialize_point(*args)


def test_format_field_value() -> None:
    assert format_field_value("float", 1.0) == "1.0"
    assert format_field_value("boolean", False) == "false"
    assert format_field_value("string", 'a"b') == '"a\\"b"'


def test_line_error_is_frozen() -> None:
    err = LineError(1, "x", "y")
    with pytest.raises(AttributeError):
        err.line = 2  # type: ignore[misc]
