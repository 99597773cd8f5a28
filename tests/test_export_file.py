"""Export files (pure): context lines pick the database, retention policies map as /write's
rp does, gzip is told by its magic bytes, and points are counted once however many lines
(one per field) an export writes for them."""
from __future__ import annotations

import gzip
import io

from influent.datain.export_file import ExportReader, open_export
from influent.datain.importer import PointKeys
from topics.line_protocol import parse_lp

EXPORT = b"""# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z
# DDL
CREATE DATABASE x WITH NAME rp2
CREATE DATABASE x WITH NAME autogen
CREATE DATABASE y WITH NAME weekly
# DML
# CONTEXT-DATABASE:x
# CONTEXT-RETENTION-POLICY:rp2
# writing wal data
events,k=d n=1i 1000000000
# CONTEXT-DATABASE:x
# CONTEXT-RETENTION-POLICY:autogen
m,t=a f=1 1000000000
m,t=a g=2i 1000000000

# CONTEXT-DATABASE:y
# CONTEXT-RETENTION-POLICY:weekly
m f=3 5
"""


def test_contexts_and_policies_choose_the_database():
    reader = ExportReader()
    got = [(b.database, b.lines, b.line_numbers) for b in reader.batches(io.BytesIO(EXPORT))]
    assert got == [("x/rp2", [b"events,k=d n=1i 1000000000"], [10]),
                   ("x", [b"m,t=a f=1 1000000000", b"m,t=a g=2i 1000000000"], [13, 14]),
                   ("y", [b"m f=3 5"], [18])]
    assert reader.databases == {"x": ["rp2", "autogen"], "y": ["weekly"]}
    # autogen lands in the database anyway, so both policies of x share one batch
    assert [b.database for b in ExportReader(default_rp="rp2").batches(io.BytesIO(EXPORT))] == [
        "x", "y"]


def test_target_db_overrides_and_plain_files_have_no_database():
    assert {b.database for b in ExportReader(target_db="t").batches(io.BytesIO(EXPORT))} == {"t"}
    plain = list(ExportReader().batches(io.BytesIO(b"cpu v=1 1\ncpu v=2 2\n")))
    assert [(b.database, len(b.lines)) for b in plain] == [(None, 2)]


def test_batches_are_cut_by_size():
    body = b"".join(b"cpu v=%d %d\n" % (i, i) for i in range(100))
    batches = list(ExportReader(target_db="t", batch_bytes=200).batches(io.BytesIO(body)))
    assert len(batches) > 1 and sum(len(b.lines) for b in batches) == 100


def test_gzip_is_told_by_its_magic(tmp_path):
    packed, plain = tmp_path / "a.lp", tmp_path / "b.gz"
    packed.write_bytes(gzip.compress(b"cpu v=1 1\n"))
    plain.write_bytes(b"cpu v=1 1\n")
    for path in (packed, plain):
        stream, raw = open_export(str(path))
        with raw:
            assert stream.read() == b"cpu v=1 1\n"


def test_points_are_counted_once_across_field_lines_and_batches():
    keys = PointKeys()
    for body in (b"m,t=a f=1 1\nm,t=b f=1 1\nm f=1 1", b"m,t=a g=2i 1\nm,t=a f=1 2\nm g=1i 1"):
        keys.add(parse_lp(body, precision="ns").tables["m"])
    assert keys.count() == 4  # (t=a,1) (t=b,1) (no tags,1) (t=a,2)
