"""Replication you can configure: on a three-broker KRaft cluster every topic the project
creates has INFLUENT_REPLICATION_FACTOR replicas and INFLUENT_MIN_INSYNC_REPLICAS, and losing a
broker (SIGKILL) in the middle of ingest loses no row."""
from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from influent import devstack
from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES
from tests.harness import running, wait_for_count

MESSAGES = 120
LINES_PER_MESSAGE = 25


async def _replication_of(bootstrap: str, topics: list[str]) -> dict[str, tuple[set[int], str]]:
    """Topic -> (replica counts of its partitions, its min.insync.replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        min_isr = {}
        for response in configs:
            for resource in response.resources:
                entries = {e[0]: e[1] for e in resource[4]}
                min_isr[resource[3]] = entries.get("min.insync.replicas")
        return {t["topic"]: ({len(p["replicas"]) for p in t["partitions"]}, min_isr[t["topic"]])
                for t in described}
    finally:
        await admin.close()


async def _topics(bootstrap: str, prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(prefix)}
    finally:
        await admin.close()


async def _leader_of(bootstrap: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return next(p["leader"] for p in described["partitions"] if p["partition"] == partition)
    finally:
        await admin.close()


def _message(table: str, index: int) -> bytes:
    base = 1_700_000_000_000_000_000 + index * LINES_PER_MESSAGE
    return "\n".join(f"{table},host=h{j % 5} v={index}i,j={j}i {base + j}"
                     for j in range(LINES_PER_MESSAGE)).encode()


async def _ingest(settings: Settings, db: str, table: str, kill_at: int, kill) -> None:
    """Send MESSAGES writes (acks=all) one after another, round robin over every partition
    (also those the killed broker led: with one replica they would stay unwritable), calling
    ``kill`` before message ``kill_at``; a send that fails is sent again, as an at-least-once
    client does."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                max_request_size=MAX_MESSAGE_BYTES, request_timeout_ms=10_000,
                                retry_backoff_ms=200)
    await producer.start()
    try:
        for index in range(MESSAGES):
            if index == kill_at:
                await kill()
            for attempt in range(20):
                try:
                    await (await producer.send(settings.writes_topic, _message(table, index),
                                               partition=index % settings.partitions,
                                               headers=[("db", db.encode())]))
                    break
                except KafkaError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
    finally:
        await producer.stop()


def test_three_brokers_lose_no_row_when_one_is_killed_mid_ingest(redis_url: str,
                                                                  tmp_path: Path) -> None:
    brokers = devstack.start_kafka_cluster(tmp_path / "kafka", tmp_path / "logs", 3,
                                           replication_factor=3, min_insync_replicas=2,
                                           die_with_parent=True)
    try:
        tag = uuid.uuid4().hex[:8]
        web_port, http_port = devstack.free_ports(2)
        settings = Settings(state_dir=tmp_path / "state",
                            kafka_bootstrap=",".join(b.endpoint for b in brokers),
                            redis_url=redis_url, topic_prefix=f"r{tag}.",
                            default_db=f"db_{tag}", partitions=3, worker_id=f"worker-{tag}",
                            worker_web_port=web_port, http_bind=f"127.0.0.1:{http_port}",
                            replication_factor=3, min_insync_replicas=2, tick_interval=1.0)
        db, table = f"repl_{tag}", "m"
        with running(settings):
            expected = {settings.writes_topic, settings.accepted_topic, settings.rejected_topic,
                        settings.persisted_topic, settings.ticks_topic,
                        f"{settings.app_id}-buffers-changelog",
                        f"{settings.app_id}-__assignor-__leader"}
            created = asyncio.run(_topics(settings.kafka_bootstrap, f"r{tag}"))
            assert expected <= created
            replication = asyncio.run(_replication_of(settings.kafka_bootstrap, sorted(created)))
            assert replication == {t: ({3}, "2") for t in created}

            killed: list[devstack.Service] = []

            async def kill_a_leader() -> None:  # the broker leading writes partition 0
                leader = await _leader_of(settings.kafka_bootstrap, settings.writes_topic, 0)
                victim = brokers[leader - 1]
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim)

            asyncio.run(_ingest(settings, db, table, MESSAGES // 2, kill_a_leader))
            assert killed and not killed[0].alive()
            wait_for_count(settings, db, table, MESSAGES * LINES_PER_MESSAGE, timeout=180)
    finally:
        for broker in brokers:
            devstack.stop(broker, 20.0)
