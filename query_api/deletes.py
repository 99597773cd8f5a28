"""Row deletes as tombstones: one service behind InfluxQL ``DELETE``/``DROP SERIES`` and InfluxDB
2's ``POST /api/v2/delete``. A delete is recorded in the catalog (and copied to the object store)
and hides the matching rows from every query at once; compaction later removes them from files.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from persist.catalog import Catalog
from persist.lifecycle_catalog import LifecycleCatalog
from persist.object_store import ObjectStore
from persist.tombstones import PredicateError, Tombstone, predicate_tags

MIN_TIME = -(2**63) + 2
MAX_TIME = 2**63 - 2


class DeleteError(ValueError):
    """A delete the client must fix (400)."""


@dataclass
class DeleteService:
    catalog: Catalog
    store: ObjectStore

    async def delete(self, db: str, tables: list[str] | None, min_time: int | None,
                     max_time: int | None, predicate: dict | None, source: str) -> list[Tombstone]:
        """Hide the rows of ``tables`` (None: every table of ``db``) within the time range that
        match ``predicate``; returns the tombstones recorded."""
        if not await self.catalog.has_database(db):
            raise LookupError(f"database not found: {db}")
        try:
            tags = predicate_tags(predicate)
        except PredicateError as exc:
            raise DeleteError(str(exc)) from exc
        for table in tables or await self.catalog.tables(db):
            schema = await self.catalog.table_schema(db, table)
            wrong = [t for t in tags if t in schema.fields]
            if wrong:
                raise DeleteError(f"fields not supported in WHERE clause during deletion: "
                                  f"{', '.join(wrong)}")
        lo = MIN_TIME if min_time is None else min_time
        hi = MAX_TIME if max_time is None else max_time
        if lo > hi:
            return []
        lifecycle = LifecycleCatalog(self.catalog)
        now_ms = int(time.time() * 1000)
        made = []
        for table in tables if tables is not None else [None]:
            tomb = Tombstone(database=db, table=table, min_time=lo, max_time=hi,
                             predicate=predicate, created_ms=now_ms, source=source, tags=tags)
            made.append(await lifecycle.add_tombstone(tomb, self.store))
        return made


# ---- InfluxDB 2 delete predicates -------------------------------------------------------------

_TERM = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][\w.\-]*))\s*(!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_AND = re.compile(r"\s*and\s+", re.IGNORECASE)


def parse_v2_predicate(text: str) -> tuple[str | None, dict | None]:
    """``_measurement="cpu" AND host="a"`` -> (measurement, tag predicate). InfluxDB 2 allows
    only ``=``/``!=`` comparisons joined by AND; ``_field`` cannot be deleted on its own."""
    text = (text or "").strip()
    if not text:
        return None, None
    pos, measurement, terms = 0, None, []
    while True:
        m = _TERM.match(text, pos)
        if not m:
            raise DeleteError(f"invalid delete predicate at position {pos}: {text[pos:pos + 40]!r} "
                              '(expected key="value" terms joined by AND)')
        key = _unescape(m.group(1)) if m.group(1) is not None else m.group(2)
        op, value = m.group(3), _unescape(m.group(4))
        if key == "_measurement":
            if op != "=":
                raise DeleteError("_measurement supports only '=' in a delete predicate")
            measurement = value
        elif key == "_field":
            raise DeleteError("deleting single fields is not supported: a delete removes whole "
                              "rows (leave _field out of the predicate)")
        else:
            terms.append({"tag": key, "op": op, "value": value})
        pos = m.end()
        if pos >= len(text):
            break
        joined = _AND.match(text, pos)
        if not joined:
            raise DeleteError(f"invalid delete predicate at position {pos}: {text[pos:pos + 40]!r} "
                              "(only AND is supported)")
        pos = joined.end()
    if not terms:
        return measurement, None
    return measurement, terms[0] if len(terms) == 1 else {"and": terms}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
