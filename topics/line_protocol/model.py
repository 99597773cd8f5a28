"""Types shared by the line protocol parser's modules.

A parse produces *segments*: runs of rows of one measurement that share one signature (the same
tag keys, field keys and field types). Both the vectorised path and the per-line fallback emit
segments, so the rules between lines and the table assembly see one representation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

FieldType = Literal["float", "integer", "uinteger", "string", "boolean"]

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "float": pa.float64(),
    "integer": pa.int64(),
    "uinteger": pa.uint64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}

#: Measurement, tag keys and values, field keys and string values are limited to 64 KiB.
MAX_VALUE_BYTES = 65536

#: The column that holds each row's timestamp; no tag or field may use the name.
TIME_COLUMN = "time"


@dataclass(frozen=True)
class LineError:
    line: int          # 1-based line number in the input
    original: str      # the original line text (full, without the trailing newline)
    reason: str        # precise human reason


@dataclass
class Segment:
    """Rows of one measurement with one signature, in input order.

    ``time`` holds the timestamps as written (before precision scaling), null where the line
    has none.
    """
    measurement: str
    lines: pa.Array                                   # int32, 1-based, ascending
    tags: dict[str, pa.Array] = field(default_factory=dict)              # string arrays
    fields: dict[str, tuple[FieldType, pa.Array]] = field(default_factory=dict)
    time: pa.Array | None = None                      # int64

    def __len__(self) -> int:
        return len(self.lines)

    def signature(self) -> dict[str, str]:
        """Column -> "tag" or the field type, as the rules between lines compare them."""
        sig = {k: "tag" for k in self.tags}
        sig.update({k: t for k, (t, _) in self.fields.items()})
        return sig
