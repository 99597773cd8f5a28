"""The session's services are real: Kafka, Redis and S3 answer like the production ones.

Also covers the dev-stack manager itself (pid files, reuse, kept state, clean stop) and the
clear error for a missing prerequisite.
"""
from __future__ import annotations

import asyncio
import io
import os
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from minio import Minio

from influent import devstack
from influent.config import Settings
from influent.model import MAX_MESSAGE_BYTES

pytestmark = pytest.mark.integration


def _topic(prefix: str = "devstack") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create_topic(bootstrap: str, topic: str, partitions: int = 1,
                        configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1,
                      topic_configs=configs or {})])
        errors = [t[1] for t in response.topic_errors if t[1] != 0]
        assert not errors, response
    finally:
        await admin.close()


async def test_kafka_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = _topic()
    await _create_topic(kafka_bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"cpu,host=a usage=1 1", key=b"k", partition=1)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                group_id=f"g-{topic}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert (msg.key, msg.value, msg.partition) == (b"k", b"cpu,host=a usage=1 1", 1)
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_kafka_compacted_topic_config(kafka_bootstrap: str) -> None:
    topic = _topic("changelog")
    await _create_topic(kafka_bootstrap, topic, partitions=4,
                        configs={"cleanup.policy": "compact"})
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})])
        [(error, _msg, _type, name, entries)] = [tuple(r)[:5] for r in response.resources]
        assert (error, name) == (0, topic)
        assert {e[0]: e[1] for e in entries}["cleanup.policy"] == "compact"
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 4
    finally:
        await admin.close()


async def test_kafka_accepts_messages_as_large_as_the_clients_send(kafka_bootstrap: str) -> None:
    """The local broker takes what a client may produce (MAX_MESSAGE_BYTES), as docker-compose's
    brokers do: 30 MiB, above the 20 MiB the local broker used to refuse."""
    topic = _topic("big")
    await _create_topic(kafka_bootstrap, topic)
    payload = os.urandom(30 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert msg.value == payload
    finally:
        await consumer.stop()


async def test_kafka_does_not_auto_create_topics(kafka_bootstrap: str) -> None:
    """Topics must be declared (with their partition count): a send to an unknown topic fails
    instead of silently creating a 1-partition topic."""
    topic = _topic("undeclared")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=1000)
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait(topic, b"x")
    finally:
        await producer.stop()
    assert topic not in await _list_topics(kafka_bootstrap)


def test_redis_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        key = _topic("key")
        assert client.set(key, b"value")
        assert client.get(key) == b"value"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()


def test_s3_bucket_put_get(s3_endpoint: str) -> None:
    client = Minio(s3_endpoint.removeprefix("http://"), access_key="testing",
                   secret_key="testing", secure=False, region="us-east-1")
    bucket = _topic("bucket")
    client.make_bucket(bucket)
    assert client.bucket_exists(bucket)
    data = b"PAR1 not really parquet PAR1"
    client.put_object(bucket, "db/table/2024-01-01/0.parquet", io.BytesIO(data), len(data))
    response = client.get_object(bucket, "db/table/2024-01-01/0.parquet")
    try:
        assert response.read() == data
    finally:
        response.close()
        response.release_conn()
    names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
    assert names == ["db/table/2024-01-01/0.parquet"]


def test_settings_fixture_is_wired(settings: Settings, kafka_bootstrap: str, redis_url: str,
                                   s3_endpoint: str) -> None:
    assert settings.kafka_bootstrap == kafka_bootstrap
    assert settings.redis_url == redis_url
    assert settings.s3_endpoint == s3_endpoint
    assert settings.partitions == 4
    assert settings.topic_prefix.startswith("t") and settings.topic_prefix.endswith(".")
    assert settings.writes_topic.startswith(settings.topic_prefix)


def test_missing_binary_gives_a_clear_error() -> None:
    with pytest.raises(devstack.MissingPrerequisite, match="definitely-missing-binary"):
        devstack.require("definitely-missing-binary")
    try:
        devstack.require("definitely-missing-binary")
    except devstack.MissingPrerequisite as exc:
        assert "not found on PATH" in str(exc)
    # The known prerequisites say how to get them.
    for binary, hint in (("java", "expected on the machine"), ("mvn", "expected on the machine"),
                         ("redis-server", "make run")):
        assert hint in devstack.install._HINTS[binary]


def test_port_in_use_is_reported(kafka_service: devstack.Service, tmp_path: Path) -> None:
    port = int(kafka_service.endpoint.rsplit(":", 1)[1])
    with pytest.raises(devstack.PortInUse, match=f"port {port} .*in use by pid {kafka_service.pid}"):
        devstack.start_redis(tmp_path / "redis", tmp_path / "logs", port)


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    devstack.require("redis-server")
    service = devstack.start_redis(tmp_path / "redis", tmp_path / "logs", devstack.free_port())
    assert service.alive()
    devstack.stop(service)
    assert not service.alive()
    assert not devstack.processes._group_alive(service.pid)
    devstack.stop(service)  # idempotent


def test_dev_stack_up_status_down_keeps_state(tmp_path: Path) -> None:
    kafka_port, controller_port, redis_port = devstack.free_ports(3)
    settings = Settings(state_dir=tmp_path / "state",
                        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
                        redis_url=f"redis://127.0.0.1:{redis_port}/0")
    services = ("kafka", "redis")
    lines: list[str] = []
    try:
        first = devstack.dev_up(settings, services, controller_port=controller_port,
                                echo=lines.append)
        assert [(s.name, started) for s, started in first] == [("kafka", True), ("redis", True)]
        state = tmp_path / "state"
        for folder in ("kafka", "redis", "objects", "logs", "pids"):
            assert (state / folder).is_dir()
        assert (state / "logs" / "kafka.log").exists() and (state / "pids" / "kafka.pid").exists()
        status = devstack.dev_status(settings)
        assert status["kafka"]["state"] == status["redis"]["state"] == "running"
        assert status["kafka"]["healthy"] and status["redis"]["healthy"]
        assert status["worker"]["state"] == "stopped"
        cluster_id = (state / "kafka" / "cluster.id").read_text()
        topic = _topic("kept")
        asyncio.run(_create_topic(settings.kafka_bootstrap, topic))
        client = redis.Redis.from_url(settings.redis_url)
        client.set("kept", b"1")
        client.close()

        again = devstack.dev_up(settings, services, controller_port=controller_port,
                                echo=lines.append)  # reuses the running services
        assert [(s.pid, started) for s, started in again] == [(s.pid, False) for s, _ in first]

        assert devstack.dev_down(settings, echo=lines.append) == 2
        for service, _ in first:
            assert not devstack.processes._pid_alive(service.pid, start_ticks=service.start_ticks)
        assert devstack.dev_status(settings)["kafka"]["state"] == "stopped"
        assert not (state / "pids" / "kafka.pid").exists()

        devstack.dev_up(settings, services, controller_port=controller_port, echo=lines.append)
        assert (state / "kafka" / "cluster.id").read_text() == cluster_id  # not reformatted
        consumer_topics = asyncio.run(_list_topics(settings.kafka_bootstrap))
        assert topic in consumer_topics
        client = redis.Redis.from_url(settings.redis_url)
        assert client.get("kept") == b"1"  # AOF kept it
        client.close()
    finally:
        devstack.dev_down(settings, echo=lines.append)
    assert devstack.dev_status(settings)["redis"]["state"] == "stopped"


async def _list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


def test_a_port_taken_before_the_service_binds_it_gets_a_fresh_launch(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """Between probing a free port and the server binding it another process may take it: the
    session's service hub relaunches on new ports instead of failing every test."""
    import socket

    from tests.conftest import ServiceHub

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    offered = [taken.getsockname()[1]]
    real = devstack.free_ports
    monkeypatch.setattr(devstack, "free_ports",
                        lambda count: [offered.pop()] if offered else real(count))
    hub = ServiceHub(tmp_path)
    try:
        service = hub.get("redis")
        assert not service.endpoint.endswith(f":{taken.getsockname()[1]}/0")
        assert redis.Redis.from_url(service.endpoint).ping()
    finally:
        hub.close()
        taken.close()
