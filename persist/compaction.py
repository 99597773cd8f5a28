"""Compaction planning and file building (pure), after IOx's generations:

- **L0**: files as persisted, one per buffer; they may overlap anything.
- **L1**: made from all L0 files of a partition plus the L1 files they overlap; L1 files do not
  overlap each other.
- **L2**: made from the L1 files plus the L2 files they overlap; L2 files do not overlap each
  other.

One plan touches one (database, table, partition key). Besides merging generations, a plan
drops files whose rows are all past the retention period (or empty), and rewrites a file that a
newer tombstone or the retention cutoff reaches into, so deleted rows leave the object store.
Outputs are cut on distinct time values, so outputs of one plan never overlap; each is sorted
and deduplicated like a persisted file (persist/parquet_files.py) and records the tombstones it
applied, the inputs it replaces and the highest source offset per source partition (catalog
rebuild restores the watermarks from them).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from persist.parquet_files import ParquetFileMeta, build_parquet, object_path, with_write_order
from persist.visibility import Visibility

DROP = "drop"          # inputs go, nothing replaces them
REWRITE = "rewrite"    # one file rewritten at its level without deleted or expired rows
MERGE = "merge"        # a generation merged into the next


@dataclass(frozen=True)
class Plan:
    database: str
    table: str
    partition_key: str
    kind: str
    inputs: tuple[ParquetFileMeta, ...]
    level: int  # level of the outputs

    def describe(self) -> str:
        return f"{self.kind} {len(self.inputs)} file(s) -> L{self.level}"


def _span(files) -> tuple[int, int]:
    return min(f.min_time for f in files), max(f.max_time for f in files)


def plan_partition(files: list[ParquetFileMeta], rules: Visibility, min_files: int
                   ) -> Plan | None:
    """The next step for one partition's files, or None when it is in shape."""
    if not files:
        return None
    first = files[0]
    make = lambda kind, inputs, level: Plan(first.database, first.table, first.partition_key,  # noqa: E731
                                            kind, tuple(sorted(inputs, key=_order)), level)
    gone = [f for f in files if f.rows == 0 or rules.file_expired(f.max_time)]
    if gone:
        return make(DROP, gone, 0)
    for f in sorted(files, key=_order):
        if _worth_trimming(f, rules.cutoff) or rules.for_file(f.min_time, f.max_time, f.tombstone_seq):
            return make(REWRITE, [f], f.level)
    for level in (0, 1):
        young = [f for f in files if f.level == level]
        if len(young) < max(min_files, 1):
            continue
        lo, hi = _span(young)
        above = [f for f in files if f.level == level + 1 and f.min_time <= hi and lo <= f.max_time]
        return make(MERGE, young + above, level + 1)
    return None


def _worth_trimming(f: ParquetFileMeta, cutoff: int | None) -> bool:
    """A file the retention cutoff runs through is rewritten once a quarter of its time span
    has expired (not at every sweep while the cutoff moves through it)."""
    return cutoff is not None and f.min_time < cutoff and (cutoff - f.min_time) * 4 >= (
        f.max_time - f.min_time + 1)


def _order(meta: ParquetFileMeta) -> tuple:
    """Write order of files (newer files win a merge), as queries order them."""
    return (meta.max_write_ts, meta.max_write_seq, meta.path)


def input_rows(table: pa.Table, meta: ParquetFileMeta, rules: Visibility) -> pa.Table:
    """A file's rows as a merge sees them: dictionaries decoded, their write order attached,
    and rows deleted or expired since it was written left out."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    table = pa.table(cols, names=table.column_names)
    return with_write_order(rules.file_rows(table, meta.min_time, meta.max_time,
                                            meta.tombstone_seq), meta)


def time_cuts(times: pa.Array, rows_per_file: int) -> list[int]:
    """Row offsets that cut time-sorted rows into pieces of about ``rows_per_file`` rows, never
    between two rows of the same time (so pieces do not overlap); includes 0 and len."""
    n = len(times)
    cuts, start = [0], 0
    values = times.to_numpy(zero_copy_only=False)
    while start + rows_per_file < n:
        at = start + rows_per_file
        same = int(values.searchsorted(values[at], side="left"))
        at = same if same > start else int(values.searchsorted(values[at], side="right"))
        if at >= n:
            break
        cuts.append(at)
        start = at
    cuts.append(n)
    return cuts


def merged_sources(inputs) -> dict[str, int]:
    marks: dict[str, int] = {}
    for f in inputs:
        own = f.sources or ({str(f.source_partition): f.max_offset} if f.source_partition >= 0 else {})
        for p, offset in own.items():
            marks[p] = max(marks.get(p, -1), offset)
    return marks


def build_outputs(plan: Plan, tables: list[pa.Table], tags: list[str], rules: Visibility,
                  tombstone_seq: int, columns: dict[str, str], target_bytes: int,
                  created_at: float) -> list[tuple[bytes, ParquetFileMeta]]:
    """The output files of a plan from its inputs' contents (``tables``, in ``plan.inputs``
    order): (bytes, metadata) each; none when nothing is left."""
    if plan.kind == DROP:
        return []
    parts = [input_rows(t, m, rules) for t, m in zip(tables, plan.inputs)]
    merged = pa.concat_tables(parts, promote_options="default")
    if merged.num_rows == 0:
        return []
    merged = merged.take(pc.sort_indices(merged, [("time", "ascending")]))
    in_bytes = sum(m.size for m in plan.inputs)
    in_rows = max(1, sum(m.rows for m in plan.inputs))
    rows_per_file = max(1, int(target_bytes / max(1.0, in_bytes / in_rows)))
    cuts = time_cuts(pc.cast(merged.column("time"), pa.int64()).combine_chunks()
                     if isinstance(merged.column("time"), pa.ChunkedArray)
                     else pc.cast(merged.column("time"), pa.int64()), rows_per_file)
    batch = uuid.uuid4().hex[:12]
    sources = merged_sources(plan.inputs)
    outputs = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        fid = f"c{plan.level}-{batch}-{i:03d}"
        meta = ParquetFileMeta(
            database=plan.database, table=plan.table, partition_key=plan.partition_key,
            path=object_path(plan.database, plan.table, plan.partition_key, fid), file_id=fid,
            size=0, rows=0, min_time=0, max_time=0,
            source_topic=plan.inputs[0].source_topic, source_partition=-1,
            min_offset=-1, max_offset=max(sources.values(), default=-1), max_write_ts=0,
            max_write_seq=0, columns=dict(columns), created_at=created_at, level=plan.level,
            tombstone_seq=tombstone_seq, sources=sources,
            replaces=[m.path for m in plan.inputs])
        body, done = build_parquet(merged.slice(lo, hi - lo), tags, meta)
        outputs.append((body, replace(done, level=plan.level)))
    return outputs
