"""Storage: Parquet bytes per row and the ratio to line protocol bytes, on TSBS cpu-only data.

Runs the real persist path (parse → buffered Arrow with write order → dedup, sort, dictionary
tags, zstd) over one day-partition of data and prints the sizes.

    python -m benchmarks.storage --hosts 100 --hours 12
"""
from __future__ import annotations

import click
import pyarrow as pa

from benchmarks.tsbs import generate_messages
from persist.parquet_files import ParquetFileMeta, build_parquet
from topics.line_protocol import parse_lp
from topics.wire import ORDER_SEQ, ORDER_TS


def measure(hosts: int, hours: float, seed: int = 123) -> dict:
    lines = int(hosts * hours * 360)
    messages = generate_messages(lines, 5000, seed=seed, hosts=hosts)
    lp_bytes = sum(len(m) for m in messages)
    batches = []
    for i, msg in enumerate(messages):
        t = parse_lp(msg).tables["cpu"]
        n = t.batch.num_rows
        b = t.batch.append_column(ORDER_TS, pa.array([i] * n, pa.int64()))
        batches.append(b.append_column(ORDER_SEQ, pa.array(range(n), pa.int64())))
    table = pa.Table.from_batches(batches)
    tags = [c for c in table.column_names if table.schema.field(c).type == pa.string()]
    meta = ParquetFileMeta(database="bench", table="cpu", partition_key="all", path="", file_id="x",
                           size=0, rows=0, min_time=0, max_time=0, source_topic="bench",
                           source_partition=0, min_offset=0, max_offset=len(messages) - 1,
                           max_write_ts=0, max_write_seq=0)
    data, meta = build_parquet(table, tags, meta)
    return {"lines": lines, "rows": meta.rows, "lp_bytes": lp_bytes, "parquet_bytes": len(data),
            "bytes_per_row": len(data) / meta.rows, "lp_bytes_per_line": lp_bytes / lines,
            "ratio": lp_bytes / len(data)}


def measure_compacted(hosts: int, hours: float, files: int = 32, seed: int = 123) -> dict:
    """The same data persisted as ``files`` small L0 files (as a worker with small persist
    thresholds writes them), then merged by the compactor's own code into L1: bytes per row of
    both, the figure to set beside the peer's compacted TSM."""
    import io

    import pyarrow.parquet as pq

    from persist.compaction import MERGE, Plan, build_outputs
    from persist.visibility import NOTHING_HIDDEN

    lines = int(hosts * hours * 360)
    messages = generate_messages(lines, max(1, lines // files), seed=seed, hosts=hosts)
    metas, contents = [], []
    for i, msg in enumerate(messages):
        t = parse_lp(msg).tables["cpu"]
        n = t.batch.num_rows
        b = t.batch.append_column(ORDER_TS, pa.array([i] * n, pa.int64()))
        b = b.append_column(ORDER_SEQ, pa.array(range(n), pa.int64()))
        table = pa.Table.from_batches([b])
        tags = [c for c in table.column_names if table.schema.field(c).type == pa.string()]
        meta = ParquetFileMeta(database="bench", table="cpu", partition_key="all", path=f"l0-{i}",
                               file_id=f"l0-{i}", size=0, rows=0, min_time=0, max_time=0,
                               source_topic="bench", source_partition=0, min_offset=i,
                               max_offset=i, max_write_ts=0, max_write_seq=0)
        data, meta = build_parquet(table, tags, meta)
        metas.append(meta)
        contents.append(pq.read_table(io.BytesIO(data)))
    plan = Plan("bench", "cpu", "all", MERGE, tuple(metas), 1)
    outputs = build_outputs(plan, contents, tags, NOTHING_HIDDEN, 0, {}, 128 * 1024 * 1024, 0.0)
    l0_bytes = sum(m.size for m in metas)
    rows = sum(m.rows for _, m in outputs)
    out_bytes = sum(len(body) for body, _ in outputs)
    return {"l0_files": len(metas), "l0_bytes": l0_bytes, "l0_rows": sum(m.rows for m in metas),
            "l0_bytes_per_row": l0_bytes / max(1, sum(m.rows for m in metas)),
            "compacted_files": len(outputs), "compacted_bytes": out_bytes, "rows": rows,
            "bytes_per_row": out_bytes / max(1, rows)}


def compare_encodings(hosts: int, hours: float, seed: int = 123) -> dict:
    """Bytes per row and write time of one persisted file's rows under each encoding choice:
    everything dictionary-encoded (influent before per-type encodings), the per-type choice of
    ``persist.parquet_files.column_encodings``, and zstd levels."""
    import io
    import time

    import pyarrow.parquet as pq

    from persist.parquet_files import ROW_GROUP_ROWS, column_encodings

    lines = int(hosts * hours * 360)
    messages = generate_messages(lines, lines, seed=seed, hosts=hosts)
    t = parse_lp(messages[0]).tables["cpu"].batch
    t = pa.Table.from_batches([t.append_column(ORDER_TS, pa.array([0] * t.num_rows, pa.int64()))
                               .append_column(ORDER_SEQ, pa.array(range(t.num_rows), pa.int64()))])
    tags = [c for c in t.column_names if t.schema.field(c).type == pa.string()]
    meta = ParquetFileMeta(database="bench", table="cpu", partition_key="all", path="", file_id="x",
                           size=0, rows=0, min_time=0, max_time=0, source_topic="bench",
                           source_partition=0, min_offset=0, max_offset=0, max_write_ts=0,
                           max_write_seq=0)
    data, _ = build_parquet(t, tags, meta)
    table = pq.read_table(pa.BufferReader(data))
    dictionary, encodings = column_encodings(table)
    variants = {"dictionary everywhere (before)": dict(use_dictionary=True),
                "per type": dict(use_dictionary=dictionary, column_encoding=encodings),
                "per type, zstd level 3": dict(use_dictionary=dictionary, column_encoding=encodings,
                                                compression_level=3),
                "per type, zstd level 9": dict(use_dictionary=dictionary, column_encoding=encodings,
                                                compression_level=9)}
    out = {}
    for name, kw in variants.items():
        best = float("inf")
        for _ in range(5):
            buf = io.BytesIO()
            t0 = time.perf_counter()
            pq.write_table(table, buf, compression="zstd", write_statistics=True,
                           row_group_size=ROW_GROUP_ROWS, **kw)
            best = min(best, time.perf_counter() - t0)
        out[name] = {"bytes_per_row": len(buf.getvalue()) / table.num_rows, "write_s": best}
    return {"rows": table.num_rows, "encodings": encodings, "variants": out}


@click.command()
@click.option("--hosts", default=100, show_default=True)
@click.option("--hours", default=12.0, show_default=True)
@click.option("--encodings", is_flag=True, help="compare encoding choices instead")
def main(hosts: int, hours: float, encodings: bool) -> None:
    if encodings:
        e = compare_encodings(hosts, hours)
        print(f"{e['rows']:,} rows, explicit encodings: {e['encodings']}")
        for name, v in e["variants"].items():
            print(f"{name:34} {v['bytes_per_row']:6.2f} bytes/row  write {v['write_s'] * 1000:7.1f} ms")
        return
    r = measure(hosts, hours)
    print(f"TSBS cpu-only: {r['lines']} lines, {hosts} hosts, {hours} h")
    print(f"line protocol : {r['lp_bytes']:>12,} bytes  ({r['lp_bytes_per_line']:.1f} bytes/line)")
    print(f"parquet       : {r['parquet_bytes']:>12,} bytes  ({r['bytes_per_row']:.2f} bytes/row)")
    print(f"ratio         : parquet is 1/{r['ratio']:.1f} of the line protocol")
    c = measure_compacted(hosts, hours)
    print(f"{c['l0_files']} L0 files : {c['l0_bytes']:>12,} bytes  ({c['l0_bytes_per_row']:.2f} bytes/row)")
    print(f"compacted    : {c['compacted_bytes']:>12,} bytes  ({c['bytes_per_row']:.2f} bytes/row, "
          f"{c['compacted_files']} file(s))")


if __name__ == "__main__":
    main()
