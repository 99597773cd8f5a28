"""The write router: admit a request body (persist/admission.py, the same checks the ingest
agent runs), produce exactly the accepted lines to ``influent.writes``, and answer as InfluxDB 3
does. Rejected lines also go to ``influent.rejected``."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from influent.config import Settings
from persist.admission import Admission, WriteRequest, admit
from persist.catalog import Catalog
from persist.soft_deletes import SoftDeletes
from topics.line_protocol import LineError
from topics.wire import RejectedLine, now

log = logging.getLogger("influent.api")
ORIGINAL_LINE_BYTES = 20


@dataclass(frozen=True)
class WriteParams:
    """How one HTTP write endpoint asked for the body to be written."""

    database: str | None
    precision: str
    accept_partial: bool
    precisions: frozenset[str]
    no_sync: bool = False
    body_format: str = "lp"  # "json": Telegraf JSON (/api/v3/write_json)


@dataclass
class WriteRouter:
    settings: Settings
    catalog: Catalog
    producer: AIOKafkaProducer
    lines_written: Counter
    lines_rejected: Counter

    async def write(self, raw: bytes, encoding: str | None, params: WriteParams
                    ) -> tuple[int, Any]:
        """(HTTP status, JSON body or None) for one write request."""
        db = params.database
        if not db:
            return 400, {"error": "missing query parameter 'db'"}
        if await SoftDeletes(self.catalog).is_deleted_database(db):
            return 400, {"error": f"database {db} is deleted"}
        request = WriteRequest(body=raw, database=db, precision=params.precision,
                               content_encoding=encoding, default_time_ns=time.time_ns(),
                               max_body_bytes=self.settings.max_body_bytes,
                               precisions=params.precisions,
                               all_or_nothing=not params.accept_partial,
                               body_format=params.body_format)
        [admission] = await admit([request], self.catalog)
        if admission.refusal is not None:
            return (413 if admission.refusal.too_large else 400), {"error": admission.refusal.reason}
        if admission.empty:
            return 400, {"error": "incoming write was empty"}
        if admission.rejected:
            await self._reject(db, admission.rejected)
            if not params.accept_partial or not admission.tables:
                await self.producer.flush()
                return 400, v3_error_body(admission.rejected, params.accept_partial)
        await self._produce(admission, params.no_sync)
        self.lines_written.inc(len(admission.accepted_lines))
        if admission.rejected:
            return 400, v3_error_body(admission.rejected, True)
        return 204, None

    async def _reject(self, db: str, errors: list[LineError]) -> None:
        self.lines_rejected.inc(len(errors))
        for err in errors:
            record = RejectedLine(db, err.line, err.original, err.reason, "http", -1, -1, now())
            await self.producer.send(self.settings.rejected_topic, record.to_json(), key=db.encode())

    async def _produce(self, admission: Admission, no_sync: bool) -> None:
        """Send the accepted lines as one message. ``no_sync``: answer once the message is
        handed to the producer, without waiting for the brokers' acknowledgement (acks=all)."""
        headers = [("db", admission.request.database.encode()),
                   ("precision", admission.precision.encode()),
                   ("content-type", b"text/plain")]  # line protocol, whatever its first byte
        sent = await self.producer.send(self.settings.writes_topic, admission.accepted_body(),
                                        headers=headers)
        if no_sync:
            sent.add_done_callback(_log_failed_send)
        else:
            await sent


def _log_failed_send(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a no_sync write could not be produced: %s", future.exception())


def _short(original: str) -> str:
    data = original.encode()[:ORIGINAL_LINE_BYTES]
    return data.decode("utf-8", "ignore")


def line_error_json(err: LineError) -> dict:
    return {"error_message": err.reason, "line_number": err.line, "original_line": _short(err.original)}


def v3_error_body(errors: list[LineError], accept_partial: bool) -> dict:
    if accept_partial:
        return {"error": "partial write of line protocol occurred",
                "data": [line_error_json(e) for e in errors]}
    return {"error": "line protocol parsing error", "data": line_error_json(errors[0])}
