"""``POST /api/v3/write_json`` (influent's own endpoint): Telegraf's JSON format through the
same write router as ``write_lp``. The body is rendered to line protocol
(:mod:`topics.telegraf_json`), so the checks, the rejected-line records and what reaches
``influent.writes`` are those of line protocol; errors name the JSON element."""
from __future__ import annotations

from persist.catalog import Catalog
from topics.telegraf_json import JsonAsLineProtocol, read_document, to_line_protocol


async def render_json_body(body: bytes, precision: str, db: str,
                           catalog: Catalog) -> JsonAsLineProtocol:
    """The body as line protocol (nanosecond timestamps); ValueError for a body that is not
    one of Telegraf's JSON shapes. Integral numbers stay integers where the catalog says so."""
    doc = read_document(body)
    known = {name: (await catalog.table_schema(db, name)).fields for name in doc.names}
    return to_line_protocol(doc, precision, known)
