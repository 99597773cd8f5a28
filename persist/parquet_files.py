"""Parquet files of persisted buffers (pure): dedup, sort, encode, and the metadata that lets
the catalog be rebuilt from the object store alone."""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from persist.dedup import deduplicate
from topics.wire import ORDER_SEQ, ORDER_TS

SCHEMA_VERSION = 1
META_KEY = b"influent"
ROW_GROUP_ROWS = 128 * 1024
FLOAT_DICTIONARY_RATIO = 4  # floats with more than rows/4 distinct values skip the dictionary


def file_id(source_partition: int, first_offset: int) -> str:
    """Named by the first source offset a persist covers, so that a retried persist writes the
    same object: a retry after a crash starts at the same first unpersisted offset, but may
    cover more entries than the attempt it repeats (a batch arrived meanwhile), so the last
    offset is not part of the name -- it would leave the interrupted attempt's object behind."""
    return f"p{source_partition:04d}-{first_offset:020d}"


def object_path(database: str, table: str, partition_key: str, fid: str) -> str:
    return f"{database}/{table}/{partition_key}/{fid}.parquet"


@dataclass(frozen=True)
class ParquetFileMeta:
    """Everything known about one Parquet file; stored in the file, the catalog and the event."""

    database: str
    table: str
    partition_key: str
    path: str
    file_id: str
    size: int
    rows: int
    min_time: int
    max_time: int
    source_topic: str
    source_partition: int
    min_offset: int
    max_offset: int
    max_write_ts: int
    max_write_seq: int
    columns: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    schema_version: int = SCHEMA_VERSION
    level: int = 0
    tombstone_seq: int = 0  # highest tombstone id already applied to the rows (persist/tombstones.py)
    sources: dict[str, int] = field(default_factory=dict)  # compacted: source partition -> max offset
    replaces: list[str] = field(default_factory=list)  # compacted: the input paths it replaced

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ParquetFileMeta":
        return cls(**json.loads(text))


def sort_for_file(table: pa.Table, tags: list[str]) -> pa.Table:
    """Tags in ascending cardinality, then time (IOx's sort key)."""
    present = [t for t in tags if t in table.column_names]
    ranked = sorted(present, key=lambda t: (pc.count_distinct(table.column(t), mode="all").as_py(), t))
    return table.sort_by([(c, "ascending") for c in ranked] + [("time", "ascending")])


def column_encodings(table: pa.Table) -> tuple[list[str], dict[str, str]]:
    """Parquet encodings per column type (measured with ``python -m benchmarks.storage
    --encodings``): time and integer fields as DELTA_BINARY_PACKED (sorted series make small
    deltas: about half the bytes of dictionary indices on TSBS data, and faster to write), floats
    as BYTE_STREAM_SPLIT unless they repeat enough for a dictionary, tags, strings and booleans
    as dictionaries. Returns the columns to dictionary-encode and the explicit encodings."""
    dictionary: list[str] = []
    encodings: dict[str, str] = {}
    for f in table.schema:
        kind = f.type
        if pa.types.is_timestamp(kind) or pa.types.is_integer(kind):
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(kind) and table.num_rows and pc.count_distinct(
                table.column(f.name)).as_py() * FLOAT_DICTIONARY_RATIO > table.num_rows:
            encodings[f.name] = "BYTE_STREAM_SPLIT"
        else:
            dictionary.append(f.name)
    return dictionary, encodings


def build_parquet(buffered: pa.Table, tags: list[str], meta: ParquetFileMeta) -> tuple[bytes, ParquetFileMeta]:
    """Dedup, sort and encode buffered rows; returns the file bytes and the completed metadata."""
    max_ts = pc.max(buffered.column(ORDER_TS)).as_py() if buffered.num_rows else 0
    max_seq = pc.max(buffered.column(ORDER_SEQ)).as_py() if buffered.num_rows else 0
    table = sort_for_file(deduplicate(buffered, tags, keep_order=True), tags)
    table = table.select(sorted(table.column_names))
    times = pc.cast(table.column("time"), pa.int64())
    present_tags = [t for t in tags if t in table.column_names]
    for name in present_tags:
        idx = table.column_names.index(name)
        table = table.set_column(idx, name, pc.dictionary_encode(table.column(name)))
    meta = replace(meta, rows=table.num_rows, min_time=pc.min(times).as_py() or 0,
                    max_time=pc.max(times).as_py() or 0, max_write_ts=max_ts or 0,
                    max_write_seq=max_seq or 0)
    flat = {f"influent.{k}".encode(): str(v).encode() for k, v in asdict(meta).items()
            if k not in ("columns", "size")}
    schema = table.schema.with_metadata({META_KEY: meta.to_json().encode(), **flat})
    buf = io.BytesIO()
    dictionary, encodings = column_encodings(table)
    pq.write_table(table.cast(schema), buf, compression="zstd", use_dictionary=dictionary,
                   column_encoding=encodings, write_statistics=True,
                   row_group_size=ROW_GROUP_ROWS)
    data = buf.getvalue()
    return data, replace(meta, size=len(data))


def with_write_order(table: pa.Table, meta: ParquetFileMeta) -> pa.Table:
    """A file's rows with their write order: each row's own (kept since files carry
    ``ORDER_TS``/``ORDER_SEQ``), else the file's newest write for every row (older files)."""
    n = table.num_rows
    if ORDER_TS not in table.column_names:
        table = table.append_column(ORDER_TS, pa.repeat(pa.scalar(meta.max_write_ts, pa.int64()), n))
    if ORDER_SEQ not in table.column_names:
        table = table.append_column(ORDER_SEQ, pa.repeat(pa.scalar(meta.max_write_seq, pa.int64()), n))
    return table


def read_meta(data_or_path) -> ParquetFileMeta:
    """The influent metadata stored in a Parquet file's key/value metadata."""
    schema = pq.read_schema(data_or_path if isinstance(data_or_path, str) else pa.BufferReader(data_or_path))
    return ParquetFileMeta.from_json(schema.metadata[META_KEY])
