"""Hot data (query_api/hot_data.py, pure): whatever parts, tag filter and time range, the rows
a query takes from the indexed parts -- merged only where parts overlap -- equal the rows of a
full deduplication of everything, filtered afterwards."""
from __future__ import annotations

import random
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from influent.model import ORDER_SEQ, ORDER_TS
from persist.dedup import deduplicate
from query_api.hot_data import HotParts, _overlapping, select, series_codes

TAGS = ["host", "region"]


def make_part(rng: random.Random, seq: int, hosts: list[str], times: list[int],
              density: float = 0.8) -> pa.Table:
    rows = [(h, t) for h in hosts for t in times if rng.random() < density]
    rows += rng.sample(rows, min(3, len(rows)))  # repeated keys inside one part
    rng.shuffle(rows)
    n = len(rows)
    region = [None if h == "h3" else "r" + h[-1] for h, _ in rows]  # a series without a tag
    return pa.table({
        "host": [h for h, _ in rows], "region": pa.array(region, pa.string()),
        "time": pa.array([t for _, t in rows], pa.timestamp("ns")),
        "a": pa.array([rng.choice([None, rng.random()]) for _ in range(n)], pa.float64()),
        "b": [rng.randrange(100) for _ in range(n)],
        ORDER_TS: [seq] * n, ORDER_SEQ: [seq * 10_000 + i for i in range(n)]})


def canonical(table: pa.Table) -> list[tuple]:
    cols = ["host", "region", "time", "a", "b"]
    table = table.select(cols)
    rows = zip(*[table.column(c).cast(pa.int64()).to_pylist() if c == "time"
                 else table.column(c).to_pylist() for c in cols])
    return sorted(rows, key=repr)


@pytest.mark.parametrize("seed", range(12))
def test_selection_equals_full_dedup(seed: int):
    rng = random.Random(seed)
    hosts = ["h0", "h1", "h2", "h3"]
    tables = []
    for seq in range(rng.randrange(2, 7)):
        start = rng.randrange(0, 60, 10)
        times = list(range(start, start + rng.randrange(10, 80, 10), 10))
        tables.append(make_part(rng, seq, rng.sample(hosts, rng.randrange(1, 5)), times))
    hot = HotParts(10**9)
    parts = [hot.part(("t", i), lambda t=t: t, TAGS, unique=False) for i, t in enumerate(tables)]
    everything = deduplicate(pa.concat_tables(tables), TAGS)
    lo, hi = sorted(rng.sample(range(-10, 150), 2))
    wanted = frozenset(rng.sample(hosts, rng.randrange(1, 4)))
    expected = everything.filter(pc.and_(
        pc.is_in(everything.column("host"), value_set=pa.array(sorted(wanted))),
        pc.and_(pc.greater_equal(everything.column("time").cast(pa.int64()), lo),
                pc.less_equal(everything.column("time").cast(pa.int64()), hi))))
    for _ in range(2):  # rows taken through the order, then from the sorted rows
        chosen = select(parts, lo, hi, hot.registry.matching({"host": wanted}))
        pieces = list(chosen.unique)
        if chosen.overlapping:
            pieces.append(deduplicate(pa.concat_tables(chosen.overlapping), TAGS))
        got = pa.concat_tables([p.select(["host", "region", "time", "a", "b"])
                                for p in pieces]) if pieces else expected.slice(0, 0)
        assert canonical(got) == canonical(expected)
        for part in chosen.unsorted:
            part.sorted()
    unfiltered = select(parts, None, None, None)
    assert unfiltered.rows >= everything.num_rows
    pieces = list(unfiltered.unique)
    if unfiltered.overlapping:
        pieces.append(deduplicate(pa.concat_tables(unfiltered.overlapping), TAGS))
    assert canonical(pa.concat_tables([p.select(["host", "region", "time", "a", "b"])
                                       for p in pieces])) == canonical(everything)


def test_parts_without_shared_series_and_times_are_not_merged():
    rng = random.Random(1)
    first = make_part(rng, 1, ["h0"], [0, 10, 20], density=1)
    other_host = make_part(rng, 2, ["h1"], [0, 10, 20], density=1)
    later = make_part(rng, 3, ["h0"], [30, 40], density=1)
    same = make_part(rng, 4, ["h0"], [20], density=1)
    hot = HotParts(10**9)
    parts = [hot.part(("p", i), lambda t=t: t, TAGS, unique=False)
             for i, t in enumerate([first, other_host, later])]
    assert select(parts, None, None, None).overlapping == []
    parts.append(hot.part(("p", 3), lambda: same, TAGS, unique=False))
    chosen = select(parts, None, None, None)
    assert len(chosen.overlapping) == 2 and len(chosen.unique) == 2


def test_cache_is_bounded_and_reuses_parts():
    rng = random.Random(2)
    table = make_part(rng, 1, ["h0", "h1"], list(range(0, 500, 10)))
    hot = HotParts(10**9)
    first = hot.part(("k",), lambda: table, TAGS, unique=False)
    assert hot.part(("k",), lambda: pytest.fail("built twice"), TAGS, unique=False) is first
    small = HotParts(first.nbytes + 1)
    small.part(("a",), lambda: table, TAGS, unique=False)
    small.part(("b",), lambda: table, TAGS, unique=False)
    assert list(small.parts) == [("b",)] and small.bytes <= small.max_bytes


def cut(table: pa.Table, lo: int, hi: int, wanted: frozenset) -> pa.Table:
    """A part not indexed, as a query reads it: cut to the time range and the tag filter."""
    ns = table.column("time").cast(pa.int64())
    return table.filter(pc.and_(pc.is_in(table.column("host"), value_set=pa.array(sorted(wanted))),
                                pc.and_(pc.greater_equal(ns, lo), pc.less_equal(ns, hi))))


@pytest.mark.parametrize("seed", range(16))
def test_selection_with_parts_not_indexed_equals_full_dedup(seed: int):
    """Some parts indexed, the others read raw (snapshots that may repeat a key, files that do
    not), and a series that only raw parts hold: the rows still equal a full dedup."""
    rng = random.Random(100 + seed)
    hosts = ["h0", "h1", "h2", "h3"]
    tables, uniques = [], []
    for seq in range(rng.randrange(2, 7)):
        start = rng.randrange(0, 60, 10)
        times = list(range(start, start + rng.randrange(10, 80, 10), 10))
        chosen_hosts = rng.sample(hosts, rng.randrange(1, 5))
        if rng.random() < 0.3:
            chosen_hosts.append("new")  # a series never indexed
        table = make_part(rng, seq, chosen_hosts, times)
        unique = rng.random() < 0.4
        tables.append(deduplicate(table, TAGS, keep_order=True) if unique else table)
        uniques.append(unique)
    hot = HotParts(10**9)
    indexed = [rng.random() < 0.5 for _ in tables]
    everything = deduplicate(pa.concat_tables(tables, promote_options="default"), TAGS)
    lo, hi = sorted(rng.sample(range(-10, 150), 2))
    wanted = frozenset(rng.sample(hosts + ["new"], rng.randrange(1, 4)))
    parts = [hot.part(("t", i), lambda t=t: t, TAGS, unique=u)
             for i, (t, u, x) in enumerate(zip(tables, uniques, indexed)) if x]
    raw = [(cut(t, lo, hi, wanted), u) for t, u, x in zip(tables, uniques, indexed) if not x]
    chosen = select(parts, lo, hi, hot.registry.matching({"host": wanted}), raw)
    pieces = list(chosen.unique)
    if chosen.overlapping:
        pieces.append(deduplicate(pa.concat_tables(chosen.overlapping), TAGS))
    expected = cut(everything, lo, hi, wanted)
    got = pa.concat_tables([p.select(["host", "region", "time", "a", "b"]) for p in pieces]) \
        if pieces else expected.slice(0, 0)
    assert canonical(got) == canonical(expected)


def test_series_codes_stay_exact_past_an_int64():
    """Seven tags of 2 000 distinct values each: the combined codes are renumbered on the way
    instead of overflowing, and rows share a code exactly when they share every tag."""
    n = 4_000
    rng = random.Random(3)
    cols = {f"t{i}": [f"v{rng.randrange(2_000)}" for _ in range(n)] for i in range(7)}
    cols["t0"][5] = None
    table = pa.table({**cols, "time": pa.array([rng.randrange(3) for _ in range(n)],
                                               pa.timestamp("ns"))})
    codes = series_codes(table, list(cols))
    tuples = list(zip(*cols.values()))
    by_tuple: dict = {}
    for code, key in zip(codes.tolist(), tuples):
        assert by_tuple.setdefault(key, code) == code
    assert len(set(by_tuple.values())) == len(by_tuple)


def test_a_part_built_by_two_threads_at_once_is_built_once():
    rng = random.Random(4)
    table = make_part(rng, 1, ["h0", "h1"], list(range(0, 500, 10)))
    hot = HotParts(10**9)
    started, release, loads = threading.Event(), threading.Event(), []

    def slow_load() -> pa.Table:
        loads.append(1)
        started.set()
        release.wait()
        return table

    results: list = []
    first = threading.Thread(target=lambda: results.append(
        hot.part(("k",), slow_load, TAGS, unique=False)))
    first.start()
    started.wait()
    second = threading.Thread(target=lambda: results.append(
        hot.part(("k",), slow_load, TAGS, unique=False)))
    second.start()
    assert hot.get(("k",)) is None  # not ready: a query reads the part raw instead
    release.set()
    first.join()
    second.join()
    assert len(loads) == 1 and results[0] is results[1] and hot.get(("k",)) is results[0]


@pytest.mark.parametrize("seed", range(20))
def test_overlap_check_equals_pairwise_comparison(seed: int):
    """The pieces set apart for a merge are exactly those sharing a timestamp and a series
    with another piece (fewer than PAIRWISE candidates), found by the shortcut over ranges."""
    rng = random.Random(seed)
    count = rng.randrange(2, 10)
    stamps, series = [], []
    for _ in range(count):
        start = rng.randrange(0, 200)
        stamps.append(np.unique(np.array(rng.sample(range(start, start + 40), rng.randrange(0, 8)),
                                         dtype=np.int64)))
        series.append(np.array(rng.sample(range(30), rng.randrange(1, 6)), dtype=np.int64))
    expected = {i for i in range(count) for j in range(count) if i != j
                and set(stamps[i]) & set(stamps[j]) and set(series[i]) & set(series[j])}
    assert _overlapping(stamps, series) == expected
