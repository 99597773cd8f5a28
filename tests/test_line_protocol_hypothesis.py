"""Property tests of the line protocol parser.

* any bytes parse without raising (only line errors), on both paths, and both paths agree;
* well-formed points with names and values that need escaping round-trip through
  ``serialize_point`` -> ``parse_lp`` / ``parse_lp_records``;
* corrupted well-formed messages still parse identically on both paths.
"""
from __future__ import annotations

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topics.line_protocol import columnar as lp_columnar
from topics.line_protocol import LineError, ParseResult, parse_lp, parse_lp_records, serialize_point

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter to the grammar, plus a few ordinary and non-ASCII ones.
LP_ALPHABET = list('ab =,"\\\n\t\r#0123456789.-+eEiutTfF\x00\x1fé') + ["\ufeff"]


def _same_on_all_paths(data: bytes) -> None:
    """Per-line parser, columnar passes, and columnar passes with Arrow-split series keys and
    small CSV blocks (many chunks) all agree."""
    expected = parse_lp_records(data, _vectorise=False)
    assert parse_lp_records(data, _vectorise=True) == expected
    few, lp_columnar.FEW_SERIES = lp_columnar.FEW_SERIES, 0
    block, lp_columnar._CSV_BLOCK_BYTES = lp_columnar._CSV_BLOCK_BYTES, 1 << 10
    try:
        assert parse_lp_records(data, _vectorise=True) == expected
    finally:
        lp_columnar.FEW_SERIES, lp_columnar._CSV_BLOCK_BYTES = few, block


def _check_structure(result: ParseResult) -> None:
    assert all(isinstance(e, LineError) for e in result.errors)
    assert [e.line for e in result.errors] == sorted(e.line for e in result.errors)
    assert result.points == sum(t.batch.num_rows for t in result.tables.values())
    for table in result.tables.values():
        assert len(table.lines) == table.batch.num_rows
        assert table.batch.schema.names[-1] == "time"
        assert table.lines.to_pylist() == sorted(table.lines.to_pylist())


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    for vectorise in (True, False):
        _check_structure(parse_lp(data, default_time=0, _vectorise=vectorise))
    _same_on_all_paths(data)


@SETTINGS
@given(st.lists(st.text(alphabet=LP_ALPHABET, max_size=60), min_size=1, max_size=30))
def test_grammar_noise_same_on_both_paths(lines: list[str]) -> None:
    _same_on_all_paths("\n".join(lines).encode())


# ---------------------------------------------------------------------------------------------
# Well-formed points

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\t")
_name = st.text(_chars, min_size=1, max_size=12).filter(lambda s: not s.endswith("\\") and s != "time")
_measurement = _name.filter(lambda s: not s.startswith("#") and "\x00" not in s)
_tag_value = st.text(_chars, min_size=1, max_size=12).filter(lambda s: not s.endswith("\\"))

_VALUES = {
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "integer": st.integers(-(2**63), 2**63 - 1),
    "uinteger": st.integers(0, 2**64 - 1),
    "string": st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    "boolean": st.booleans(),
}


@st.composite
def schemas(draw: st.DrawFn) -> tuple[str, list[str], dict[str, str]]:
    """A measurement, its tag keys and its field keys with types (all names distinct)."""
    names = draw(st.lists(_name, min_size=1, max_size=7, unique=True))
    n_tags = draw(st.integers(0, len(names) - 1))
    tags, fields = names[:n_tags], names[n_tags:]
    types = {f: draw(st.sampled_from(sorted(_VALUES))) for f in fields}
    return draw(_measurement), tags, types


@st.composite
def points(draw: st.DrawFn, schema: tuple[str, list[str], dict[str, str]]) -> dict:
    measurement, tag_keys, field_types = schema
    tags = {k: draw(_tag_value) for k in tag_keys if draw(st.booleans())}
    chosen = [k for k in field_types if draw(st.booleans())] or [next(iter(field_types))]
    fields = {k: {"type": field_types[k], "value": draw(_VALUES[field_types[k]])} for k in chosen}
    timestamp = draw(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)))
    return {"measurement": measurement, "tags": tags, "fields": fields, "timestamp": timestamp}


@st.composite
def messages(draw: st.DrawFn) -> list[dict]:
    schema_list = draw(st.lists(schemas(), min_size=1, max_size=3))
    unique = {s[0]: s for s in schema_list}   # one schema per measurement keeps types consistent
    return draw(st.lists(st.sampled_from(sorted(unique.values())).flatmap(points), min_size=1, max_size=25))


def _message(points_: list[dict]) -> tuple[bytes, list[int]]:
    """The points as one message, and the (physical, 1-based) line each starts on."""
    texts = [_serialise(p) for p in points_]
    starts, line = [], 1
    for text in texts:
        starts.append(line)
        line += text.count("\n") + 1
    return "\n".join(texts).encode(), starts


def _serialise(point: dict) -> str:
    fields = {k: (f["type"], f["value"]) for k, f in point["fields"].items()}
    return serialize_point(point["measurement"], point["tags"], fields, point["timestamp"])


@SETTINGS
@given(messages())
def test_round_trip(points_: list[dict]) -> None:
    data, starts = _message(points_)
    expected = [dict(p, line=line) for p, line in zip(points_, starts)]
    assert parse_lp_records(data, _vectorise=False) == expected
    _same_on_all_paths(data)


@SETTINGS
@given(messages())
def test_round_trip_batches(points_: list[dict]) -> None:
    data, starts = _message(points_)
    by_line = dict(zip(starts, points_))
    result = parse_lp(data, default_time=7, _vectorise=True)
    assert result.errors == [] and result.points == len(points_)
    for table in result.tables.values():
        rows = table.batch.drop_columns(["time"]).to_pylist()
        times = table.batch.column("time").view(pa.int64()).to_pylist()
        for line, row, ts in zip(table.lines.to_pylist(), rows, times):
            point = by_line[line]
            assert point["measurement"] == table.name
            assert {k: v for k, v in row.items() if v is not None and k in table.tags} == point["tags"]
            assert {k: v for k, v in row.items() if v is not None and k in table.fields} == \
                {k: f["value"] for k, f in point["fields"].items()}
            assert ts == (7 if point["timestamp"] is None else point["timestamp"])


@SETTINGS
@given(messages(), st.data())
def test_corrupted_messages_same_on_both_paths(points_: list[dict], data: st.DataObject) -> None:
    text = "\n".join(_serialise(p) for p in points_)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        char = data.draw(st.sampled_from(LP_ALPHABET))
        if action == "insert":
            text = text[:at] + char + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + char + text[at + 1:]
    _same_on_all_paths(text.encode())
