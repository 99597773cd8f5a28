"""Line protocol into ``influent.writes`` in large messages, as any producer writes it.

Lines are gathered per target database and sent as gzip'd messages of up to ``batch_bytes``
of line protocol (headers ``db``, ``precision: ns``, ``content-type: text/plain``,
``content-encoding: gzip``); a message whose compressed size would pass 1 MB (what a broker
with default settings takes) is split in two until it fits. ``flush`` returns once every message is
acknowledged by all in-sync replicas (acks=all): only then may a caller checkpoint.
"""
from __future__ import annotations

import asyncio
import gzip

from aiokafka import AIOKafkaProducer

from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES

#: Compressed size above which a message is split: a broker's default message.max.bytes is 1 MiB
SPLIT_ABOVE_BYTES = min(1_000_000, MAX_MESSAGE_BYTES)


class WritesSink:
    def __init__(self, settings: Settings, batch_bytes: int = 4 * 1024 * 1024) -> None:
        self.settings = settings
        self.batch_bytes = batch_bytes
        self.pending: dict[str, list[bytes]] = {}
        self.pending_bytes: dict[str, int] = {}
        self.in_flight: list[asyncio.Future] = []
        self.messages = 0
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                         max_request_size=MAX_MESSAGE_BYTES, linger_ms=5)

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    @property
    def buffered_bytes(self) -> int:
        return sum(self.pending_bytes.values())

    async def write(self, db: str, lines: bytes) -> None:
        """Queue whole lines (no trailing newline needed) for ``db``; send a full batch."""
        if not lines:
            return
        self.pending.setdefault(db, []).append(lines.rstrip(b"\n"))
        self.pending_bytes[db] = self.pending_bytes.get(db, 0) + len(lines) + 1
        if self.pending_bytes[db] >= self.batch_bytes:
            await self._send(db)

    async def flush(self) -> None:
        """Send everything queued and wait until Kafka acknowledged every message."""
        for db in list(self.pending):
            await self._send(db)
        futures, self.in_flight = self.in_flight, []
        await asyncio.gather(*futures)

    async def _send(self, db: str) -> None:
        body = b"\n".join(self.pending.pop(db, []))
        self.pending_bytes.pop(db, None)
        if body:
            await self._send_body(db, body)

    async def _send_body(self, db: str, body: bytes) -> None:
        packed = gzip.compress(body, compresslevel=1)
        if len(packed) > SPLIT_ABOVE_BYTES and b"\n" in body:
            cut = body.rfind(b"\n", 0, len(body) // 2 + 1)
            cut = cut if cut > 0 else body.find(b"\n")
            await self._send_body(db, body[:cut])
            await self._send_body(db, body[cut + 1:])
            return
        headers = [("db", db.encode()), ("precision", b"ns"), ("content-type", b"text/plain"),
                   ("content-encoding", b"gzip")]
        self.in_flight.append(await self.producer.send(self.settings.writes_topic, packed,
                                                       headers=headers))
        self.messages += 1
