"""A batch of writes messages gives the same rows, order and rejections as the messages one at a
time; the catalog is asked once per batch when nothing is new (real Redis)."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

from agents.batch_ingest import WriteMessage, drop_obsolete_rows, ingest_batch
from agents.catalog_cache import CatalogCache
from persist.admission import admit, parses_alone
from persist.catalog import Catalog
from tests.harness import unique
from topics.wire import ORDER_SEQ, ORDER_TS, ROWS_PER_MESSAGE_BITS

BASE_NS = 1_700_000_000_000_000_000


def msg(offset: int, body: str, db: str = "d", precision: str | None = None,
        origin: str | None = None, ts_ms: int | None = None) -> WriteMessage:
    headers = {"db": db}
    if precision:
        headers["precision"] = precision
    if origin:
        headers["origin"] = origin
    return WriteMessage("w", 3, offset, ts_ms if ts_ms is not None else 1_700_000_000_000 + offset,
                        headers, body.encode())


@pytest.mark.integration
def test_messages_join_by_database_precision_and_origin_and_open_quotes_parse_alone(redis_url):
    messages = [msg(0, "m v=1"), msg(1, "m v=2", precision="s"), msg(2, "m v=3"),
                msg(3, "m v=4", db="e"), msg(4, "m v=5", origin="trig"),
                msg(5, 'm s="open'), msg(6, "m v=6"), msg(7, "m v=1", db="bad name")]

    async def scenario():
        catalog = Catalog.connect(redis_url, unique("join"))
        try:
            return await admit([m.request("d", 1 << 30) for m in messages], catalog, join=True)
        finally:
            await catalog.close()

    admissions = asyncio.run(scenario())
    shapes = [(a.request.database, a.precision, a.request.origin,
               [messages[i].offset for i in a.members]) for a in admissions if a.refusal is None]
    assert shapes == [("d", "ns", None, [0, 2, 6]), ("d", "s", None, [1]), ("e", "ns", None, [3]),
                      ("d", "ns", "trig", [4]), ("d", "ns", None, [5])]
    assert [[messages[i].offset for i in a.members] for a in admissions if a.refusal] == [[7]]
    joined = admissions[0]
    assert joined.body == b"m v=1\nm v=3\nm v=6" and joined.locate(3) == (6, 1)
    assert parses_alone(b'm s="a\\"b"') and not parses_alone(b'm s="ab" 1')


def test_rows_at_or_below_the_watermark_or_deleted_are_dropped():
    rows = pa.RecordBatch.from_pydict({
        ORDER_TS: pa.array([10, 20, 30], pa.int64()),
        ORDER_SEQ: pa.array([(4 << ROWS_PER_MESSAGE_BITS) + 1, (5 << ROWS_PER_MESSAGE_BITS) + 1,
                             (6 << ROWS_PER_MESSAGE_BITS) + 2], pa.int64())})
    assert drop_obsolete_rows(rows, None, 4).column(ORDER_TS).to_pylist() == [20, 30]
    assert drop_obsolete_rows(rows, 20, None).column(ORDER_TS).to_pylist() == [30]
    assert drop_obsolete_rows(rows, None, None).num_rows == 3


def rows_of(outcome) -> list[dict]:
    out = []
    for e in outcome.entries:
        table = pa.Table.from_batches([e.rows]) if isinstance(e.rows, pa.RecordBatch) else e.rows
        table = table.set_column(table.schema.get_field_index("time"), "time",
                                 table.column("time").cast(pa.int64()))
        for row in table.to_pylist():
            out.append({k: v for k, v in row.items() if v is not None} | {"_table": e.table,
                                                                         "_pk": e.partition_key})
    return sorted(out, key=lambda r: (r[ORDER_SEQ], r["_table"]))


@pytest.mark.integration
def test_a_batch_equals_its_messages_one_by_one(redis_url):
    messages = [msg(10 + i, f"cpu,host=h{i % 3} usage={i}i {BASE_NS + i}") for i in range(50)]
    messages += [
        msg(60, "cpu,host=h1 usage=7i\nmem,host=h1 free=2.5"),  # no timestamps: message time
        msg(61, "cpu,host=h2 usage=1.5"),  # type conflict with usage (integer): rejected
        msg(62, "cpu,host=h2 usage=3i 1700000000", precision="s"),
        msg(63, "not line protocol\ncpu,host=h9 usage=9i"),
    ]

    async def scenario():
        ns = unique("batch")
        catalog = Catalog.connect(redis_url, ns)
        try:
            batched = await ingest_batch(messages, CatalogCache(catalog), "d")
            one_cache = CatalogCache(Catalog.connect(redis_url, unique("batch1")))
            singles = [await ingest_batch([m], one_cache, "d") for m in messages]
            trips_before = (cache := CatalogCache(catalog)).round_trips
            await ingest_batch(messages[:50], cache, "d")  # warms the cache
            warm = cache.round_trips
            await ingest_batch([msg(200 + i, f"cpu,host=h1 usage={i}i") for i in range(20)],
                               cache, "d")
            return batched, singles, warm - trips_before, cache.round_trips - warm
        finally:
            await catalog.close()

    batched, singles, cold_trips, warm_trips = asyncio.run(scenario())
    expected = sorted((r for s in singles for r in rows_of(s)),
                      key=lambda r: (r[ORDER_SEQ], r["_table"]))
    assert rows_of(batched) == expected
    assert len(expected) == 50 + 2 + 1 + 1
    no_ts = [r for r in rows_of(batched) if r[ORDER_SEQ] >> ROWS_PER_MESSAGE_BITS == 60]
    assert [r["time"] for r in no_ts] == [(1_700_000_000_000 + 60) * 1_000_000] * 2
    assert [(r.message.offset, r.error.line, r.error.original) for r in batched.rejected] == [
        (61, 1, "cpu,host=h2 usage=1.5"), (63, 1, "not line protocol")]
    assert [(r.message.offset, r.error.line) for s in singles for r in s.rejected] == [(61, 1), (63, 1)]
    assert warm_trips == 1  # the version check only: nothing new
    assert cold_trips >= 2


def test_split_rows_is_split_by_partition_of_the_partition_keys():
    from persist.partitioning import (PartitionTemplate, partition_keys, split_by_partition,
                                      split_rows)
    day = 86_400_000_000_000
    cases = [[BASE_NS, BASE_NS + 5, BASE_NS + 3_600_000_000_000], [BASE_NS, BASE_NS + day * 40],
             [-day + 1, -day + 2], [-1, 0], [0], [day - 1, day - 2, 0]]
    templates = [PartitionTemplate(), PartitionTemplate("%Y-%m"), PartitionTemplate("%Y-%m-%dT%H"),
                 PartitionTemplate("%Y-%m-%d", ("host",)), PartitionTemplate("100%%-%Y")]
    for unit, scale in (("ns", 1), ("us", 1000)):
        for times in cases:
            batch = pa.record_batch({
                "host": pa.array(["a|b", None, "c"] * len(times))[:len(times)],
                "time": pa.array([t // scale for t in times], pa.timestamp(unit))})
            for template in templates:
                expected = split_by_partition(batch, partition_keys(batch, template))
                got = split_rows(batch, template)
                assert list(got) == list(expected), (times, template)
                assert all(got[k].equals(expected[k]) for k in got), (times, template)


def test_date_only_formats_are_applied_once_per_day_with_the_same_text():
    from persist.partitioning import format_times
    times = pa.array([BASE_NS, BASE_NS + 86_400_000_000_000 * 40 + 5, None, -86_400_000_000_000 + 1,
                      BASE_NS + 3_600_000_000_000], pa.timestamp("ns"))
    for fmt in ("%Y-%m-%d", "%Y/%j", "%F", "%Y-%m", "%Y-%m-%d %H", "100%%-%Y"):
        assert format_times(times, fmt).equals(pa.compute.strftime(times, format=fmt)), fmt
    chunked = pa.chunked_array([times[:2], times[2:]])
    assert format_times(chunked, "%Y-%m-%d").equals(pa.compute.strftime(times, format="%Y-%m-%d"))


@pytest.mark.integration
def test_messages_of_several_partitions_give_each_partition_its_own_entries(redis_url):
    """A fetch of several partitions is admitted at once; the entries, their offsets and the
    rejected lines are those of each partition's messages alone."""
    def on(partition: int, m: WriteMessage) -> WriteMessage:
        return m._replace(partition=partition)

    messages = [on(p, msg(10 * p + i, f"cpu,host=h{i} usage={p}i {BASE_NS + i}"))
                for p in (1, 4) for i in range(5)]
    messages += [on(4, msg(45, "cpu,host=h1 usage=1.5")),  # conflicts with usage: rejected
                 on(4, msg(46, "mem,host=h1 free=2.5 1700000000000000000")),
                 on(6, msg(7, f"cpu,host=h8 usage=8i {BASE_NS + 86_400_000_000_000}"))]

    def entries(outcome):
        return [(e.partition, e.table, e.partition_key, e.offset, rows_of(
            type(outcome)([e]))) for e in outcome.entries]

    async def scenario():
        catalog = Catalog.connect(redis_url, unique("parts"))
        try:
            together = await ingest_batch(messages, CatalogCache(catalog), "d")
            alone_cache = CatalogCache(Catalog.connect(redis_url, unique("parts1")))
            alone = [await ingest_batch([m for m in messages if m.partition == p], alone_cache, "d")
                     for p in (1, 4, 6)]
            return together, alone
        finally:
            await catalog.close()

    together, alone = asyncio.run(scenario())
    assert entries(together) == [x for a in alone for x in entries(a)]
    assert [(e.partition, e.table, e.offset) for e in together.entries] == [
        (1, "cpu", 14), (4, "cpu", 46), (4, "mem", 46), (6, "cpu", 7)]
    assert [(r.message.partition, r.message.offset, r.error.line) for r in together.rejected] == [
        (4, 45, 1)]
    assert [(r.message.partition, r.message.offset) for r in together.rejected] == [
        (r.message.partition, r.message.offset) for a in alone for r in a.rejected]


def test_small_batches_are_encoded_plain_and_large_ones_compressed_both_read_back():
    from topics.wire import COMPRESS_MIN_BYTES, decode_batches, encode_batch
    for n in (1, 10, 5000):
        batch = pa.record_batch({"host": pa.array([f"h{i % 7}" for i in range(n)]),
                                 "v": pa.array(range(n), pa.int64())})
        data = encode_batch(batch)
        assert decode_batches(data).equals(pa.Table.from_batches([batch]))
        plain = pa.ipc.IpcWriteOptions()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema, options=plain) as writer:
            writer.write(batch)
        assert (len(data) < sink.getvalue().size) == (batch.nbytes >= COMPRESS_MIN_BYTES)


@pytest.mark.integration
def test_groups_close_at_the_join_limit_with_the_same_rows_and_rejections(redis_url, monkeypatch):
    import persist.admission as admission
    messages = [msg(10 + i, f"cpu,host=h{i % 3} usage={i}i {BASE_NS + i}\ncpu,host=x usage=1.5\n")
                for i in range(12)]

    async def scenario():
        catalog = Catalog.connect(redis_url, unique("limit"))
        try:
            whole = await ingest_batch(messages, CatalogCache(catalog), "d")
            monkeypatch.setattr(admission, "JOIN_MAX_BYTES", 100)  # about two messages a group
            groups = admission._admissions([m.request("d", 1 << 30) for m in messages], True)
            cut = await ingest_batch(messages, CatalogCache(catalog), "d")
            return whole, groups, cut
        finally:
            await catalog.close()

    whole, groups, cut = asyncio.run(scenario())
    assert [len(g.members) for g in groups] == [2] * 6
    assert rows_of(cut) == rows_of(whole) and len(rows_of(cut)) == 12
    assert [(r.message.offset, r.error.line) for r in cut.rejected] == [
        (r.message.offset, r.error.line) for r in whole.rejected] == [(10 + i, 2) for i in range(12)]
