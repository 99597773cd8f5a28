"""Subscription delivery: the matching rows of accepted writes, as line protocol, to Kafka
topics and HTTP receivers (InfluxDB 1.x-style ``POST /write``, which Kapacitor and Telegraf's
``influxdb_listener`` accept).

Runs in every worker process beside the Faust agents, never inside them: each destination of
each subscription (``ALL`` mode; one unit per subscription in ``ANY`` mode) is its own asyncio
task with its own consumer group on ``influent.accepted`` (:mod:`agents.group_consumer`), so a
slow or dead receiver delays nobody but itself, and offsets are committed only after delivery.

- Kafka destination: one message per accepted batch (only its matching rows), key
  ``<db>/<table>``, headers ``db`` and ``precision: ns``; the topic is created if missing.
- HTTP destination: the matching lines of a fetched batch in one POST (split at
  ``HTTP_CHUNK_BYTES``). Connection errors, 5xx, 401, 403, 404, 408 and 429 are retried with
  exponential backoff; other 4xx mean the receiver will never take these lines: they are
  logged, counted (``influent_subscription_dropped_lines_total``) and skipped.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import faust
import httpx
import pyarrow as pa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from influent.model import TAG
from influent.model import MAX_MESSAGE_BYTES
from agents.group_consumer import Backoff, GroupConsumer, GroupSpec
from agents.supervisor import Supervisor, Unit
from influent.config import Settings
from persist.catalog import Catalog
from persist.engine_catalog import SEP, Destination, EngineCatalog, Subscription
from topics.line_protocol.render import render_text
from topics.subscription_filter import Predicate, matching_rows, parse_predicate
from topics.wire import decode_batches, header_dict

log = logging.getLogger("influent.subscriptions")

HTTP_CHUNK_BYTES = 1024 * 1024
HTTP_TIMEOUT = 10.0
RETRIED_STATUSES = {401, 403, 404, 408, 429}
TOPIC_READY_TIMEOUT = 30.0


def write_url(url: str, db: str, rp: str) -> str:
    """The URL to POST to: a bare ``http://host:port`` (as InfluxQL's CREATE SUBSCRIPTION gives
    it) becomes ``/write?db=<db>&rp=<rp>``, as InfluxDB 1.x's subscriber does; a URL with a
    path is used as given, with ``db`` added when it has none."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = parts.path
    if path in ("", "/"):
        path = "/write"
        query.setdefault("rp", rp)
    query.setdefault("db", db)
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def lag_prefix(sub: Subscription, unit: str) -> str:
    return SEP.join(("subscription", sub.database, sub.name, unit))


class ColumnKinds:
    """Column kinds per (database, table) from the catalog (tags and string fields share the
    Arrow type), re-read when a batch has a column the cached schema lacks."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.known: dict[tuple[str, str], dict[str, str]] = {}

    async def of(self, db: str, table: str, columns: list[str]) -> dict[str, str]:
        kinds = self.known.get((db, table))
        if kinds is None or any(c not in kinds for c in columns):
            kinds = self.known[(db, table)] = (await self.catalog.table_schema(db, table)).columns
        return kinds


@dataclass(frozen=True)
class Selection:
    """What a subscription takes from the accepted topic."""

    database: str
    tables: frozenset[str]
    predicate: Predicate | None

    @classmethod
    def of(cls, sub: Subscription) -> "Selection":
        return cls(sub.database, frozenset(sub.tables), parse_predicate(sub.predicate))


async def select_lines(selection: Selection, records: list[ConsumerRecord], kinds: ColumnKinds
                       ) -> list[tuple[str, bytes]]:
    """(table, line protocol) of each record's matching rows, in record order; records of other
    databases or tables (told by headers, before anything is decoded) are skipped."""
    out = []
    for record in records:
        headers = header_dict(record.headers)
        table = headers.get("table", "")
        if headers.get("database") != selection.database:
            continue
        if selection.tables and table not in selection.tables:
            continue
        batch: pa.Table = decode_batches(record.value)
        columns = await kinds.of(selection.database, table, batch.column_names)
        tags = {c for c, k in columns.items() if k == TAG}
        body = render_text(table, matching_rows(selection.predicate, batch, tags), columns)
        if body:
            out.append((table, body))
    return out


class Delivery:
    """The process-wide clients every delivery unit shares."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, http: httpx.AsyncClient,
                 catalog: EngineCatalog):
        self.settings = settings
        self.producer = producer
        self.http = http
        self.catalog = catalog
        self.topics_ready: set[str] = set()

    async def ensure_topic(self, topic: str) -> None:
        """Create the topic if missing and wait until every partition has a leader, so the
        first sends do not fail (a failed send would be retried, and delivered twice)."""
        if topic in self.topics_ready:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            if topic not in set(await admin.list_topics()):
                try:
                    await admin.create_topics([NewTopic(
                        topic, self.settings.partitions, self.settings.replication_factor,
                        topic_configs=self.settings.topic_replica_configs)])
                    log.info("created subscription topic %s", topic)
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()
        client = self.producer.client
        deadline = asyncio.get_running_loop().time() + TOPIC_READY_TIMEOUT
        while True:
            await client.force_metadata_update()
            parts = client.cluster.partitions_for_topic(topic) or set()
            if parts and parts == client.cluster.available_partitions_for_topic(topic):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaTimeoutError(f"topic {topic} has partitions without a leader")
            await asyncio.sleep(0.1)
        self.topics_ready.add(topic)

    async def to_kafka(self, sub: Subscription, topic: str, items: list[tuple[str, bytes]]) -> bool:
        try:
            await self.ensure_topic(topic)
            futures = [await self.producer.send(topic, body, key=f"{sub.database}/{table}".encode(),
                                                headers=[("db", sub.database.encode()),
                                                         ("precision", b"ns")])
                       for table, body in items]
            await asyncio.gather(*futures)
            return True
        except KafkaError as exc:
            log.warning("subscription %s/%s: kafka:%s failed: %s", sub.database, sub.name, topic, exc)
            return False

    async def to_http(self, sub: Subscription, url: str, items: list[tuple[str, bytes]]) -> bool:
        target = write_url(url, sub.database, sub.retention_policy)
        for chunk in _chunks([body for _, body in items], HTTP_CHUNK_BYTES):
            try:
                resp = await self.http.post(target, content=chunk, timeout=HTTP_TIMEOUT)
            except httpx.HTTPError as exc:
                log.info("subscription %s/%s: %s unreachable: %s", sub.database, sub.name, url, exc)
                return False
            if resp.status_code >= 500 or resp.status_code in RETRIED_STATUSES:
                log.info("subscription %s/%s: %s answered %d", sub.database, sub.name, url,
                         resp.status_code)
                return False
            if resp.status_code >= 400:
                lines = chunk.count(b"\n") + 1
                log.warning("subscription %s/%s: %s refused %d lines (%d: %s); skipped",
                            sub.database, sub.name, url, lines, resp.status_code, resp.text[:200])
                await self.catalog.incr("subscription_dropped", sub.database, sub.name, url, by=lines)
        return True

    async def send(self, sub: Subscription, dest: Destination, items: list[tuple[str, bytes]]) -> bool:
        if dest.kind == "kafka":
            return await self.to_kafka(sub, dest.target, items)
        return await self.to_http(sub, dest.target, items)


def _chunks(bodies: list[bytes], limit: int) -> list[bytes]:
    out, current, size = [], [], 0
    for body in bodies:
        if current and size + len(body) > limit:
            out.append(b"\n".join(current))
            current, size = [], 0
        current.append(body)
        size += len(body) + 1
    if current:
        out.append(b"\n".join(current))
    return out


async def deliver(delivery: Delivery, kinds: ColumnKinds, sub: Subscription,
                  destinations: tuple[Destination, ...], unit: str) -> None:
    """One delivery unit until cancelled: ALL mode has one destination per unit; ANY mode
    rotates over all destinations, taking the first that accepts."""
    settings = delivery.settings
    selection = Selection.of(sub)
    rotation = itertools.cycle(range(len(destinations)))
    label = destinations[0].uri if len(destinations) == 1 else "ANY"

    async def handle(records: list[ConsumerRecord]) -> bool:
        items = await select_lines(selection, records, kinds)
        if not items:
            return True
        first = next(rotation)
        for i in range(len(destinations)):
            if await delivery.send(sub, destinations[(first + i) % len(destinations)], items):
                lines = sum(body.count(b"\n") + 1 for _, body in items)
                await delivery.catalog.incr("subscription_delivered", sub.database, sub.name,
                                            label, by=lines)
                return True
        await delivery.catalog.incr("subscription_failures", sub.database, sub.name, label)
        return False

    spec = GroupSpec(group_id=f"{settings.app_id}.subscription.{sub.database}.{sub.name}.{unit}",
                     topic=settings.accepted_topic, start_ms=sub.created_ms,
                     lag_prefix=lag_prefix(sub, label))
    await GroupConsumer(settings.kafka_bootstrap, spec, delivery.catalog).run(handle)


def delivery_units(sub: Subscription) -> list[tuple[str, tuple[Destination, ...]]]:
    """(unit id, destinations) of a subscription: one per destination in ALL mode."""
    if sub.mode == "ANY":
        return [("any", sub.destinations)]
    return [(str(i), (d,)) for i, d in enumerate(sub.destinations)]


async def run_subscriptions(settings: Settings) -> None:
    """Deliver every subscription of the catalog until cancelled."""
    catalog = EngineCatalog.connect(settings.redis_url, settings.app_id)
    schema = Catalog.connect(settings.redis_url, settings.app_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, max_request_size=MAX_MESSAGE_BYTES)
    backoff = Backoff(cap=10.0)
    while True:
        try:
            await producer.start()
            break
        except KafkaError:
            await asyncio.sleep(backoff.next())
    http = httpx.AsyncClient()
    delivery = Delivery(settings, producer, http, catalog)
    kinds = ColumnKinds(schema)

    async def wanted() -> dict[str, Unit]:
        units: dict[str, Unit] = {}
        for sub in await catalog.subscriptions():
            for unit, dests in delivery_units(sub):
                key = f"{sub.database}/{sub.name}/{unit}@{sub.created_ms}"
                units[key] = (lambda s=sub, d=dests, u=unit: deliver(delivery, kinds, s, d, u))
        return units

    try:
        await Supervisor("subscription", catalog, wanted).run()
    finally:
        await http.aclose()
        await producer.stop()
        await schema.close()
        await catalog.close()


def register_subscriptions(app: faust.App, settings: Settings) -> None:
    """Start subscription delivery with the worker (after its tables are recovered)."""

    @app.task
    async def subscriptions() -> None:
        await run_subscriptions(settings)
