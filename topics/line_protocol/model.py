"""Types shared by the line protocol parser's modules.

A parse produces *segments*: runs of rows of one measurement that share one signature (the same
tag keys, field keys and field types). Both the vectorised path and the per-line fallback emit
segments, so the rules between lines and the table assembly see one representation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from influent.model import ARROW_TYPES, MAX_VALUE_BYTES, TAG, TIME_COLUMN, FieldType

__all__ = ["ARROW_TYPES", "MAX_VALUE_BYTES", "TIME_COLUMN", "FieldType", "LineError", "Segment"]


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
        sig = {k: TAG for k in self.tags}
        sig.update({k: t for k, (t, _) in self.fields.items()})
        return sig
