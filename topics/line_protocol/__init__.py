"""Line protocol: InfluxDB's text format <-> Arrow record batches (InfluxDB 3 / IOx semantics).

Where each concern lives (a line protocol bug is fixed in the module that owns the rule):

- ``grammar``  — the one grammar: line splitting, element ends, escapes, value syntaxes and
  ranges, every per-line rule and its error reason. The reference; the other paths defer to it.
- ``lines``    — cutting a message into blocks of plain lines and hard lines (for ``grammar``).
- ``columnar`` — plain lines parsed column-wise with Arrow; a line it cannot vouch for goes to
  ``grammar``, which also words the error.
- ``assemble`` — timestamp precision, the rules between lines, building the batches.
- ``parser``   — ``parse_lp`` and friends: chooses the path and puts the parts together.
- ``render``   — Arrow rows -> line protocol text (forwarding to subscribers).
- ``model``    — the types the modules above share.

The shared vectors (``tests/data/line_protocol``) run through both paths (vectorised and
per-line) and hold them to the same results.
"""
from topics.line_protocol.parser import (ARROW_TYPES, FieldType, LineError, ParsedTable,
                                         ParseResult, escape_name, format_field_value, parse_lp,
                                         parse_lp_main, parse_lp_records, serialize_point)

__all__ = ["ARROW_TYPES", "FieldType", "LineError", "ParsedTable", "ParseResult", "parse_lp",
           "parse_lp_records", "parse_lp_main", "serialize_point", "format_field_value",
           "escape_name"]
