"""The query API's side of InfluxQL statements that change state: ``SELECT ... INTO`` writes
and CREATE / DROP / SHOW CONTINUOUS QUERIES.

INTO points are checked against the catalog's column types like an HTTP write (bad lines go
to the rejected topic with source ``influxql``) and produced to the writes topic with the
same headers, so ingest, deduplication and persistence treat them as any other write.
"""
from __future__ import annotations

from aiokafka import AIOKafkaProducer

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES, validate_db_name
from persist.catalog import Catalog
from persist.continuous_queries import ContinuousQuery, ContinuousQueryStore
from query_api.writes import check_write
from topics.line_protocol import parse_lp
from topics.wire import RejectedLine, now


class IntoWrites:
    """:class:`query_api.influxql.into.WriteHook` over the writes topic."""

    def __init__(self, settings: Settings, catalog: Catalog, producer: AIOKafkaProducer):
        self.settings = settings
        self.catalog = catalog
        self.producer = producer

    async def write_lines(self, db: str, lines: bytes) -> None:
        reason = validate_db_name(db)
        if reason:
            raise ValueError(reason)
        result = parse_lp(lines, precision="ns")
        schemas = {name: await self.catalog.table_schema(db, name) for name in result.tables}
        checked = check_write(result, schemas, lines)
        for err in checked.errors:
            record = RejectedLine(db, err.line, err.original, err.reason, "influxql", -1, -1, now())
            await self.producer.send(self.settings.rejected_topic, record.to_json(),
                                     key=db.encode())
        if checked.errors:
            await self.producer.flush()
            first = checked.errors[0]
            raise ValueError(f"partial write: {first.reason} (line {first.line}); "
                             f"dropped={len(checked.errors)}")
        headers = [("db", db.encode()), ("precision", b"ns")]
        for chunk in message_chunks(lines, MAX_MESSAGE_BYTES // 2):
            await self.producer.send_and_wait(self.settings.writes_topic, chunk, headers=headers)


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
