"""Create the pipeline's topics before any process uses them.

The broker does not auto-create topics (an auto-created topic would get the broker's default
partition count and break co-partitioning), so every process that starts makes sure the data
topics exist with ``INFLUENT_PARTITIONS`` partitions, ``INFLUENT_REPLICATION_FACTOR`` replicas
and ``INFLUENT_MIN_INSYNC_REPLICAS``. Existing topics are left as they are.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from influent.config import Settings

log = logging.getLogger("influent.topics")

HOUR_MS = 3_600_000


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> topic configs."""
    return {
        settings.writes_topic: {},
        settings.accepted_topic: {"retention.ms": str(24 * HOUR_MS)},
        settings.rejected_topic: {},
        settings.persisted_topic: {},
        settings.ticks_topic: {"retention.ms": str(HOUR_MS)},
    }


async def ensure_topics(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Create the missing pipeline topics; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=int(timeout * 1000))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, settings.partitions, settings.replication_factor,
                           topic_configs={**settings.topic_replica_configs, **cfg})
                  for name, cfg in topic_specs(settings).items() if name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race
            log.info("created topics %s", [t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()
