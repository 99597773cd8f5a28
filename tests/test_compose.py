"""docker-compose.yml is parsed and checked (no Docker engine here to run it)."""
from pathlib import Path

import yaml

from influent.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images():
    services = compose()["services"]
    assert {"kafka", "redis", "minio", "minio-bucket", "worker", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["minio"]["image"].startswith("minio/minio")
    assert "mc mb" in " ".join(services["minio-bucket"]["entrypoint"])


def test_kafka_is_single_node_kraft():
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_LOG_CLEANER_ENABLE"] == "true"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_ports():
    services = compose()["services"]
    assert "9092:9092" in services["kafka"]["ports"]
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
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.object_store == "s3://influent"
        assert settings.partitions == 8
