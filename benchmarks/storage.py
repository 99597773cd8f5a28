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


@click.command()
@click.option("--hosts", default=100, show_default=True)
@click.option("--hours", default=12.0, show_default=True)
def main(hosts: int, hours: float) -> None:
    r = measure(hosts, hours)
    print(f"TSBS cpu-only: {r['lines']} lines, {hosts} hosts, {hours} h")
    print(f"line protocol : {r['lp_bytes']:>12,} bytes  ({r['lp_bytes_per_line']:.1f} bytes/line)")
    print(f"parquet       : {r['parquet_bytes']:>12,} bytes  ({r['bytes_per_row']:.2f} bytes/row)")
    print(f"ratio         : parquet is 1/{r['ratio']:.1f} of the line protocol")


if __name__ == "__main__":
    main()
