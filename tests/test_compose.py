"""docker-compose.yml is parsed and checked (no Docker engine here to run it)."""
from pathlib import Path

import yaml

from influent.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images():
    services = compose()["services"]
    brokers = {"kafka-1", "kafka-2", "kafka-3"}
    assert brokers | {"redis", "minio", "minio-bucket", "worker", "api"} <= set(services)
    assert all(services[b]["image"].startswith("apache/kafka:3.9") for b in brokers)
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["minio"]["image"].startswith("minio/minio")
    assert "mc mb" in " ".join(services["minio-bucket"]["entrypoint"])


def test_kafka_is_a_three_node_kraft_cluster_with_three_replicas():
    services = compose()["services"]
    envs = [services[f"kafka-{n}"]["environment"] for n in (1, 2, 3)]
    assert [env["KAFKA_NODE_ID"] for env in envs] == ["1", "2", "3"]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    assert {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs} == {
        "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for n, env in enumerate(envs, 1):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert f"PLAINTEXT://kafka-{n}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
        assert env["KAFKA_LOG_CLEANER_ENABLE"] == "true"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert services[f"kafka-{n}"]["volumes"] == [f"kafka-{n}-data:/var/lib/kafka/data"]


def test_ports():
    services = compose()["services"]
    assert [services[f"kafka-{n}"]["ports"] for n in (1, 2, 3)] == [
        ["9092:29092"], ["9093:29092"], ["9094:29092"]]
    assert "6379:6379" in services["redis"]["ports"]
    assert "9000:9000" in services["minio"]["ports"]
    assert "8181:8181" in services["api"]["ports"]


def test_worker_scales_and_env_matches_settings():
    services = compose()["services"]
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=3 works
    assert worker["command"] == ["worker"] and services["api"]["command"] == ["api"]
    required = {"INFLUENT_KAFKA_BOOTSTRAP", "INFLUENT_REDIS_URL", "INFLUENT_OBJECT_STORE",
                "INFLUENT_HTTP_BIND", "INFLUENT_TOPIC_PREFIX", "INFLUENT_PARTITIONS",
                "INFLUENT_DEFAULT_DB", "INFLUENT_TOKEN"}
    known = set(Settings().as_env())
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert required <= set(env), name
        assert set(env) <= known, f"{name} sets keys the settings do not know"
        settings = Settings.from_env({k: str(v) for k, v in env.items()})
        assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
        assert settings.object_store == "s3://influent"
        assert settings.partitions == 8
