"""The Faust application: one worker process hosting the ingest, persist, subscription and
trigger agents over co-partitioned topics."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import faust

from influent.model import MAX_MESSAGE_BYTES
from influent.config import Settings
from tables.buffers import buffers_table
from topics.declarations import declare_topics


class InfluentWorker(faust.Worker):
    """A Faust worker that persists its buffers before a clean shutdown (SIGTERM/SIGINT).

    Not needed for durability — the changelog holds every buffer — but it leaves the next
    owner nothing to replay and makes the data land in Parquet promptly."""

    def __init__(self, app: faust.App, drain, drain_timeout: float = 60.0, **kwargs):
        super().__init__(app, **kwargs)
        self._drain = drain
        self._drain_timeout = drain_timeout

    async def on_stop(self) -> None:
        try:
            await self._drain(self._drain_timeout)
        except Exception:  # shutdown must go on; the changelog keeps what was not persisted
            self.log.exception("drain on shutdown failed")
        await super().on_stop()


def create_app(settings: Settings) -> tuple[faust.App, Callable[[float], Awaitable[int]]]:
    """Build the worker app for ``settings`` (a factory, so tests can run isolated apps);
    returns the app and its shutdown ``drain`` coroutine function."""
    datadir = Path(settings.state_dir) / "workers" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_request_timeout=30.0,
        broker_commit_interval=1.0,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_enabled=True,
        consumer_auto_offset_reset="earliest",
    )
    topics = declare_topics(app, settings)
    buffers = buffers_table(app, settings.partitions, settings.topic_replica_configs)
    # Faust's leader topic (it creates it itself) gets the same min.insync.replicas.
    app._leader_assignor._leader_topic.config = dict(settings.topic_replica_configs)

    from agents.backpressure import BufferedBytes
    from agents.compaction import register_compaction
    from agents.ingest import register_ingest  # local imports: agents register on this app
    from agents.persist import register_persist
    from agents.subscriptions import register_subscriptions
    from agents.triggers import register_triggers
    from agents.continuous_queries import register_continuous_queries

    pressure = BufferedBytes(settings.ingest_max_buffered_bytes)  # shared: ingest adds, persist takes off
    stop_ingest = register_ingest(app, settings, topics, buffers, pressure)
    drain_persist = register_persist(app, settings, topics, buffers, pressure)

    async def drain(timeout: float) -> int:
        await stop_ingest()  # nothing new gets buffered while the buffers are persisted
        return await drain_persist(timeout)

    register_subscriptions(app, settings)
    register_triggers(app, settings)
    register_compaction(app, settings, topics)
    register_continuous_queries(app, settings)
    return app, drain
