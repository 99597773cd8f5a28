"""Pure lifecycle logic: tombstone predicates, delete-predicate parsing, durations, compaction
plans and output files."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from persist.compaction import DROP, MERGE, REWRITE, build_outputs, plan_partition, time_cuts
from persist.parquet_files import ParquetFileMeta, build_parquet
from persist.tombstones import PredicateError, Tombstone, drop_deleted, predicate_tags, purgeable
from persist.visibility import Visibility, format_duration, parse_duration
from query_api.deletes import DeleteError, parse_v2_predicate
from query_api.influxql.conditions import ConditionError
from query_api.influxql.deletes import tag_predicate
from query_api.influxql.parser import parse_query
from topics.wire import ORDER_SEQ, ORDER_TS


def rows(hosts, times, written_ms=None, values=None):
    n = len(hosts)
    cols = {"host": pa.array(hosts, pa.string()), "time": pa.array(times, pa.timestamp("ns")),
            "v": pa.array(values or [float(i) for i in range(n)], pa.float64())}
    if written_ms is not None:
        cols[ORDER_TS] = pa.array(written_ms, pa.int64())
        cols[ORDER_SEQ] = pa.array(range(n), pa.int64())
    return pa.table(cols)


def test_tombstone_hides_matching_rows_written_before_it():
    t = rows(["a", "a", "b", None], [1, 5, 5, 5], written_ms=[10, 10, 10, 30])
    tomb = Tombstone("db", "cpu", 0, 4, {"tag": "host", "op": "=", "value": "a"}, created_ms=20)
    assert drop_deleted(t, [tomb], by_write_time=True).column("time").cast(pa.int64()).to_pylist() == [5, 5, 5]
    everything = Tombstone("db", None, 0, 10, None, created_ms=20)
    # the row written after the delete (written at 30) stays
    assert drop_deleted(t, [everything], by_write_time=True).num_rows == 1
    assert drop_deleted(t, [everything], by_write_time=False).num_rows == 0
    # a missing tag compares as ''
    not_a = Tombstone("db", None, 0, 10, {"tag": "host", "op": "!=", "value": "a"}, created_ms=40)
    assert drop_deleted(t, [not_a], by_write_time=True).column("host").to_pylist() == ["a", "a"]
    regex = Tombstone("db", None, 0, 10, {"or": [{"tag": "host", "op": "=~", "value": "^b"},
                                                {"tag": "dc", "op": "=", "value": "x"}]},
                      created_ms=40)
    assert drop_deleted(t, [regex], by_write_time=True).column("host").to_pylist() == ["a", "a", None]


def test_predicate_validation():
    assert predicate_tags({"and": [{"tag": "a", "op": "=", "value": "1"},
                                   {"tag": "b", "op": "!~", "value": "x"}]}) == ("a", "b")
    with pytest.raises(PredicateError):
        predicate_tags({"tag": "a", "op": "<", "value": "1"})
    with pytest.raises(PredicateError):
        predicate_tags({"tag": "a", "op": "=~", "value": "("})


def test_v2_delete_predicates():
    assert parse_v2_predicate('_measurement="cpu" AND host="a b" and "dc"!="x\\"y"') == (
        "cpu", {"and": [{"tag": "host", "op": "=", "value": "a b"},
                        {"tag": "dc", "op": "!=", "value": 'x"y'}]})
    assert parse_v2_predicate("") == (None, None)
    assert parse_v2_predicate('_measurement="m"') == ("m", None)
    for bad in ('host="a" OR host="b"', 'host=a', '_field="usage"', 'host="a" AND'):
        with pytest.raises(DeleteError):
            parse_v2_predicate(bad)


def test_influxql_delete_conditions():
    stmt = parse_query("DELETE FROM cpu WHERE (host = 'a' OR host =~ /b/) AND dc <> 'x'").statements[0]
    assert tag_predicate(stmt.condition) == {"and": [
        {"or": [{"tag": "host", "op": "=", "value": "a"}, {"tag": "host", "op": "=~", "value": "b"}]},
        {"tag": "dc", "op": "!=", "value": "x"}]}
    with pytest.raises(ConditionError):
        tag_predicate(parse_query("DELETE FROM cpu WHERE v > 1").statements[0].condition)
    with pytest.raises(Exception):
        parse_query("DELETE")


def test_durations():
    assert parse_duration("30d") == 30 * 86400 * 10**9
    assert parse_duration("1h 30m") == 5400 * 10**9
    assert parse_duration("72 hours") == 72 * 3600 * 10**9
    assert format_duration(parse_duration("7d")) == "1w" and format_duration(90 * 10**9) == "90s"
    for bad in ("", "10", "5 parsecs", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_time_cuts_never_split_equal_times():
    times = pa.array([1, 1, 1, 2, 2, 3, 4, 4, 4, 4], pa.int64())
    cuts = time_cuts(times, 2)
    assert cuts[0] == 0 and cuts[-1] == 10
    for c in cuts[1:-1]:
        assert times[c - 1].as_py() != times[c].as_py()
    assert time_cuts(times, 100) == [0, 10]


def meta(path, level=0, rows=10, lo=0, hi=100, write=1, seq=0, size=1000):
    return ParquetFileMeta("db", "cpu", "2024-01-01", path, path, size, rows, lo, hi, "w", 0, 0,
                           write, write, 0, level=level, tombstone_seq=seq)


def test_plans():
    none = Visibility()
    l0 = [meta(f"f{i}", write=i) for i in range(3)]
    assert plan_partition(l0, none, 4) is None
    plan = plan_partition(l0 + [meta("f3", write=3)], none, 4)
    assert plan.kind == MERGE and plan.level == 1 and len(plan.inputs) == 4
    l1 = [meta("a", level=1, lo=0, hi=50), meta("b", level=1, lo=200, hi=300)]
    plan = plan_partition(l0 + [meta("f3", write=3)] + l1, none, 4)
    assert {m.path for m in plan.inputs} == {"f0", "f1", "f2", "f3", "a"}
    assert plan_partition([meta("e", rows=0)], none, 4).kind == DROP
    assert plan_partition([meta("old", hi=10)], Visibility(cutoff=50), 4).kind == DROP
    assert plan_partition([meta("half", lo=0, hi=100)], Visibility(cutoff=60), 4).kind == REWRITE
    assert plan_partition([meta("tail", lo=0, hi=100)], Visibility(cutoff=10), 4) is None
    tomb = Tombstone("db", "cpu", 0, 5, None, id=3)
    assert plan_partition([meta("x", seq=2)], Visibility(tombstones=(tomb,)), 4).kind == REWRITE
    assert plan_partition([meta("x", seq=3)], Visibility(tombstones=(tomb,)), 4) is None


def file_of(table, path, write):
    m = ParquetFileMeta("db", "cpu", "pk", path, path, 0, 0, 0, 0, "w", 0, write, write, 0, 0)
    body, done = build_parquet(table, ["host"], m)
    return pq.read_table(io.BytesIO(body)), done


def test_build_outputs_merges_newest_last_and_applies_deletes():
    old, m_old = file_of(rows(["a", "b"], [1, 2], written_ms=[1, 1], values=[1.0, 2.0]), "old", 1)
    new, m_new = file_of(rows(["a", "c"], [1, 3], written_ms=[5, 5], values=[9.0, 3.0]), "new", 5)
    tomb = Tombstone("db", "cpu", 0, 10, {"tag": "host", "op": "=", "value": "c"}, id=1)
    rules = Visibility(tombstones=(tomb,))
    plan = plan_partition([m_old, m_new], rules, 2)
    assert plan.kind == REWRITE  # the tombstone first
    merge = plan_partition([m_old, m_new], Visibility(), 2)
    outs = build_outputs(merge, [old, new], ["host"], rules, 1, {"host": "tag", "v": "float"},
                         1 << 20, 0.0)
    assert len(outs) == 1
    body, out = outs[0]
    got = pq.read_table(io.BytesIO(body)).drop_columns(["time"]).to_pydict()
    assert got["host"] == ["a", "b"] and got["v"] == [9.0, 2.0]
    assert out.level == 1 and out.tombstone_seq == 1 and sorted(out.replaces) == ["new", "old"]
    assert out.max_write_ts == 5 and out.sources == {"0": 5}
    small = build_outputs(merge, [old, new], ["host"], Visibility(), 0, {}, 1, 0.0)
    assert len(small) == 3 and len({o.path for _, o in small}) == 3


def test_a_tombstone_is_purgeable_only_once_it_hides_nothing():
    tomb = Tombstone("db", "cpu", 100, 200, None, created_ms=1_000, id=5)
    applied = meta_at(150, 160, tombstone_seq=5)
    elsewhere = meta_at(300, 400, tombstone_seq=1)  # outside its time range
    assert purgeable(tomb, [applied, elsewhere], None, now_ms=2_000, min_age_ms=500)
    # a file it still hides rows in
    assert not purgeable(tomb, [applied, meta_at(190, 250, tombstone_seq=4)], None, 2_000, 500)
    # a buffered row written before it
    assert not purgeable(tomb, [applied], 1_000, 2_000, 500)
    assert purgeable(tomb, [applied], 1_001, 2_000, 500)
    # too young: writes made before it may still be on their way
    assert not purgeable(tomb, [applied], None, 1_400, 500)


def meta_at(min_time: int, max_time: int, tombstone_seq: int) -> ParquetFileMeta:
    return ParquetFileMeta(database="db", table="cpu", partition_key="p", path=f"f{min_time}",
                           file_id="f", size=1, rows=1, min_time=min_time, max_time=max_time,
                           source_topic="w", source_partition=0, min_offset=0, max_offset=0,
                           max_write_ts=0, max_write_seq=0, tombstone_seq=tombstone_seq)


def test_an_overwrite_persisted_in_another_partition_wins_by_its_own_write_time():
    """Found by the soak: a point written at 1 ms to one partition, overwritten at 2 ms through
    another; the first partition's file also holds a later write (9 ms). The overwrite must win
    in queries and in compaction, although its file's newest write is older."""
    from query_api.engine import assemble_table, file_rows
    from persist.catalog import TableSchema
    from persist.compaction import MERGE, Plan

    first, m_first = file_of(rows(["a", "b"], [1, 2], written_ms=[1, 9], values=[1.0, 5.0]), "p0", 9)
    second, m_second = file_of(rows(["a"], [1], written_ms=[2], values=[2.0]), "p1", 2)
    assert m_first.max_write_ts == 9 and m_second.max_write_ts == 2
    schema = TableSchema({"host": "tag", "time": "time", "v": "float"})
    parts = [file_rows(second, m_second), file_rows(first, m_first)]  # catalog order: newest last
    got = assemble_table(schema, parts).sort_by("host")
    assert got.column("host").to_pylist() == ["a", "b"] and got.column("v").to_pylist() == [2.0, 5.0]
    plan = Plan("db", "cpu", "pk", MERGE, (m_second, m_first), 1)
    (body, _), = build_outputs(plan, [second, first], ["host"], Visibility(), 0,
                               {"host": "tag", "v": "float"}, 1 << 20, 0.0)
    merged = pq.read_table(io.BytesIO(body)).drop_columns(["time"]).to_pydict()
    # the compacted file still knows each row's write time, for later merges
    assert sorted(zip(merged["host"], merged["v"], merged[ORDER_TS])) == [("a", 2.0, 2), ("b", 5.0, 9)]
