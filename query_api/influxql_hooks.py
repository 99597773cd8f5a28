"""The query API's side of InfluxQL statements that change state: ``SELECT ... INTO`` writes
and CREATE / DROP / SHOW CONTINUOUS QUERIES.

INTO points go through the write admission like an HTTP write (bad lines go to the rejected
topic with source ``influxql``) and are produced to the writes topic with the same headers,
so ingest, deduplication and persistence treat them as any other write.
"""
from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES
from persist.admission import WriteRequest, admit
from persist.catalog import Catalog
from persist.continuous_queries import ContinuousQuery, ContinuousQueryStore
from topics.wire import RejectedLine, now


class IntoWrites:
    """:class:`query_api.influxql.into.WriteHook` over the writes topic, through the write
    admission (persist/admission.py) like every other write."""

    def __init__(self, settings: Settings, catalog: Catalog, producer: AIOKafkaProducer):
        self.settings = settings
        self.catalog = catalog
        self.producer = producer

    async def write_lines(self, db: str, lines: bytes) -> None:
        request = WriteRequest(body=lines, database=db, precision="ns",
                               default_time_ns=time.time_ns(),
                               max_body_bytes=max(len(lines), self.settings.max_body_bytes))
        [admission] = await admit([request], self.catalog)
        if admission.refusal is not None:
            raise ValueError(admission.refusal.reason)
        for err in admission.rejected:
            record = RejectedLine(db, err.line, err.original, err.reason, "influxql", -1, -1, now())
            await self.producer.send(self.settings.rejected_topic, record.to_json(),
                                     key=db.encode())
        if admission.tables:
            headers = [("db", db.encode()), ("precision", admission.precision.encode()),
                       ("content-type", b"text/plain")]
            for chunk in message_chunks(admission.accepted_body(), MAX_MESSAGE_BYTES // 2):
                await self.producer.send_and_wait(self.settings.writes_topic, chunk,
                                                  headers=headers)
        if admission.rejected:  # as 1.x: the other points are written, the statement fails
            await self.producer.flush()
            first = admission.rejected[0]
            raise ValueError(f"partial write: {first.reason} (line {first.line}) "
                             f"dropped={len(admission.rejected)}")


def message_chunks(lines: bytes, limit: int) -> list[bytes]:
    """``lines`` cut at line ends into pieces of at most ``limit`` bytes (a longer single line
    stays whole: the ingest side reports it)."""
    chunks, start = [], 0
    while len(lines) - start > limit:
        cut = lines.rfind(b"\n", start, start + limit)
        cut = lines.find(b"\n", start + limit) if cut < 0 else cut
        if cut < 0:
            break
        chunks.append(lines[start:cut + 1])
        start = cut + 1
    if start < len(lines):
        chunks.append(lines[start:])
    return chunks


class ContinuousQueryStatements:
    """:class:`query_api.influxql.continuous.ContinuousQueryHook` over the catalog."""

    def __init__(self, catalog: Catalog, store: ContinuousQueryStore):
        self.catalog = catalog
        self.store = store

    async def create(self, cq: ContinuousQuery) -> None:
        if not await self.catalog.has_database(cq.database):
            raise LookupError(f"database not found: {cq.database}")
        if not await self.store.create(cq):
            raise ValueError("continuous query already exists")

    async def drop(self, db: str, name: str) -> None:
        if not await self.store.drop(db, name):
            raise LookupError("continuous query not found")

    async def list(self) -> tuple[list[str], list[ContinuousQuery]]:
        return sorted(await self.catalog.databases()), await self.store.all()


def influxql_hooks(app, settings: Settings) -> dict:
    """The ``execute_influxql`` keyword arguments for INTO and continuous queries."""
    catalog: Catalog = app.state.catalog
    return {"writes": IntoWrites(settings, catalog, app.state.producer),
            "continuous_queries": ContinuousQueryStatements(
                catalog, ContinuousQueryStore(catalog.redis, settings.app_id))}
