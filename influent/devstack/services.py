"""Starting each service: the Kafka broker (KRaft, single node, or a cluster of N), Redis, the S3 server, and
influent's own worker and API processes."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from influent.config import PROJECT_ROOT, Settings
from influent.model import MAX_MESSAGE_BYTES
from influent.devstack.install import KAFKA_LOG4J, _cds_options, _java, _kafka_jvm_options, kafka_classpath, require
from influent.devstack.processes import MissingPrerequisite, Service, ServiceStartError, _check_port_free, _spawn, free_ports, http_status, kafka_metadata, redis_ping, stop, wait_ready

#: Largest Kafka record batch the local broker accepts: the same bound the clients use for a
#: request (``MAX_MESSAGE_BYTES``) and docker-compose's brokers set, so a message one accepts
#: the other does too.
KAFKA_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES


def _new_cluster_id() -> str:
    """A Kafka cluster id: base64url of a random UUID, like ``kafka-storage random-uuid``."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller) of a cluster on 127.0.0.1: its id and ports."""

    node_id: int
    port: int
    controller_port: int


@dataclass(frozen=True)
class KafkaQuorum:
    """What every node of a cluster shares: the controller voters, the cluster id, and the
    replication defaults of the broker's own topics (consumer offsets, transactions)."""

    nodes: tuple[KafkaNode, ...]
    cluster_id: str
    replication_factor: int = 1
    min_insync_replicas: int = 1

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


def _kafka_properties(data_dir: Path, node: KafkaNode, quorum: KafkaQuorum | None,
                      auto_create_topics: bool) -> str:
    log_dir = data_dir / "log"
    port, controller_port = node.port, node.controller_port
    voters = quorum.voters if quorum else f"{node.node_id}@127.0.0.1:{controller_port}"
    replicas = str(quorum.replication_factor if quorum else 1)
    min_isr = str(quorum.min_insync_replicas if quorum else 1)
    props = {
        # KRaft nodes that are both broker and controller, loopback only (one, by default).
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "metadata.log.dir": str(log_dir),
        # Sized for 2 cores.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        # Single node: every replication factor and ISR is 1; a cluster uses its quorum's.
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        # Fewer internal partitions: the first group/transaction coordinator lookup creates
        # these topics, and every test session starts from an empty broker.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        # Topics: created explicitly (Faust declares what it uses with the right partition
        # count; tests use the admin client). With auto-create off, producing to an undeclared
        # topic fails instead of silently creating a 1-partition topic that later breaks
        # co-partitioning (PartitionsMismatch).
        "auto.create.topics.enable": "true" if auto_create_topics else "false",
        "num.partitions": "1",
        "delete.topic.enable": "true",
        # Groups: join at once, and allow the short session timeouts tests use.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # Compacted topics (Faust changelogs) are really compacted; small dedupe buffer so the
        # cleaner fits the modest heap.
        "log.cleaner.enable": "true",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        # Only closed segments are compacted: 64 MiB segments (not 1 GiB) let a long-running
        # dev stack's changelogs actually shrink.
        "log.segment.bytes": str(64 * 1024 * 1024),
        # Messages up to the clients' MAX_MESSAGE_BYTES.
        "message.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "replica.fetch.response.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        "socket.request.max.bytes": str(128 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def launch_kafka(
    data_dir: Path | str,
    log_dir: Path | str,
    port: int,
    controller_port: int,
    *,
    auto_create_topics: bool = False,
    die_with_parent: bool = False,
    learn_classes: bool = False,
    node_id: int = 1,
    quorum: KafkaQuorum | None = None,
) -> Service:
    """Format (first time only) and start the broker without waiting; see :func:`start_kafka`.
    ``quorum`` makes it node ``node_id`` of a cluster (see :func:`launch_kafka_cluster`); its
    log is then ``kafka-<node_id>.log``."""
    data_dir = Path(data_dir).resolve()
    log_dir = Path(log_dir).resolve()
    _check_port_free(port, "kafka")
    _check_port_free(controller_port, "kafka controller")
    classpath = kafka_classpath()
    java = _java()
    if not KAFKA_LOG4J.exists():
        raise MissingPrerequisite(f"{KAFKA_LOG4J} is missing (run from the source tree)")
    data_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    node = KafkaNode(node_id, port, controller_port)
    props.write_text(_kafka_properties(data_dir, node, quorum, auto_create_topics))
    cds_opts, on_stopped = _cds_options(java, learn_classes)
    fmt_cds = [o for o in cds_opts if o.startswith("-XX:SharedArchiveFile=")]
    id_file = data_dir / "cluster.id"
    if not id_file.exists():
        id_file.write_text((quorum.cluster_id if quorum else _new_cluster_id()) + "\n")
    if not (data_dir / "log" / "meta.properties").exists():
        log_dir.mkdir(parents=True, exist_ok=True)
        fmt = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", *fmt_cds,
               f"-Dlog4j.configuration={KAFKA_LOG4J.resolve().as_uri()}", "-cp", classpath,
               "kafka.tools.StorageTool", "format", "--ignore-formatted",
               "-t", id_file.read_text().strip(), "-c", str(props)]
        proc = subprocess.run(fmt, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        with open(log_dir / "kafka.log", "a") as log:
            log.write(f"\n==== formatting {data_dir / 'log'}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise ServiceStartError(
                f"kafka storage format failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
    cmd = [java, *_kafka_jvm_options(), *cds_opts, "-cp", classpath, "kafka.Kafka", str(props)]
    name = f"kafka-{node_id}" if quorum else "kafka"
    service = _spawn(name, cmd, log_dir, endpoint=f"127.0.0.1:{port}", marker=str(props),
                     cwd=data_dir, die_with_parent=die_with_parent)

    def check() -> bool:  # this node is registered and unfenced
        brokers, _controller = kafka_metadata("127.0.0.1", port)
        return node_id in brokers

    service.check = check
    service.on_stopped = on_stopped
    return service


def start_kafka(
    data_dir: Path | str,
    log_dir: Path | str,
    port: int,
    controller_port: int,
    timeout: float = 90.0,
    *,
    auto_create_topics: bool = False,
    die_with_parent: bool = False,
    learn_classes: bool = False,
) -> Service:
    """Start a single-node KRaft Kafka broker+controller on 127.0.0.1 and wait until it serves.

    ``data_dir`` keeps ``server.properties`` (rewritten each start), ``cluster.id`` (generated
    once) and the log/metadata directory ``log/`` (formatted with ``kafka.tools.StorageTool`` on
    first start only, so data survives restarts). Output goes to ``<log_dir>/kafka.log``.
    Healthy = a Metadata request lists the broker (registered and unfenced). Topic
    auto-creation is off unless ``auto_create_topics``. ``learn_classes``: this process will
    :func:`stop` the broker itself, which may then record the JVM class-data archive that
    makes later starts faster (see :func:`_cds_options`).
    """
    service = launch_kafka(data_dir, log_dir, port, controller_port,
                           auto_create_topics=auto_create_topics,
                           die_with_parent=die_with_parent, learn_classes=learn_classes)
    return wait_ready(service, timeout)


def launch_kafka_cluster(root: Path | str, log_dir: Path | str, nodes: int = 3, *,
                         replication_factor: int = 3, min_insync_replicas: int = 2,
                         die_with_parent: bool = False) -> list[Service]:
    """Start ``nodes`` KRaft brokers (each also a controller voter) sharing one cluster id, on
    free loopback ports, data in ``<root>/node-<id>``; returns them without waiting (a node
    answers only once a majority of voters runs, so all start before any is awaited).
    ``replication_factor``/``min_insync_replicas`` are the brokers' defaults and those of their
    own internal topics."""
    root = Path(root).resolve()
    ports = free_ports(2 * nodes)
    quorum = KafkaQuorum(tuple(KafkaNode(i + 1, ports[2 * i], ports[2 * i + 1])
                               for i in range(nodes)),
                         _new_cluster_id(), replication_factor, min_insync_replicas)
    services: list[Service] = []
    try:
        for node in quorum.nodes:
            services.append(launch_kafka(root / f"node-{node.node_id}", log_dir, node.port,
                                         node.controller_port, die_with_parent=die_with_parent,
                                         node_id=node.node_id, quorum=quorum))
    except BaseException:
        for service in services:
            stop(service, 10.0)
        raise
    return services


def start_kafka_cluster(root: Path | str, log_dir: Path | str, nodes: int = 3,
                        timeout: float = 120.0, **options) -> list[Service]:
    """:func:`launch_kafka_cluster`, then wait until every broker serves (stops them all when
    one does not). ``",".join(s.endpoint for s in ...)`` is the bootstrap list."""
    services = launch_kafka_cluster(root, log_dir, nodes, **options)
    try:
        for service in services:
            wait_ready(service, timeout)
    except BaseException:
        for service in services:
            stop(service, 10.0)
        raise
    return services


def launch_redis(data_dir: Path | str, log_dir: Path | str, port: int, *,
                 die_with_parent: bool = False) -> Service:
    """Start ``redis-server`` without waiting; see :func:`start_redis`."""
    redis = require("redis-server")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _check_port_free(port, "redis")
    cmd = [redis, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
           "--appendonly", "yes", "--daemonize", "no", "--logfile", "", "--save", "",
           "--protected-mode", "yes", "--databases", "16"]
    service = _spawn("redis", cmd, log_dir, endpoint=f"redis://127.0.0.1:{port}/0",
                     marker=f"127.0.0.1:{port}", cwd=data_dir, die_with_parent=die_with_parent)
    service.check = lambda: redis_ping("127.0.0.1", port)
    return service


def start_redis(data_dir: Path | str, log_dir: Path | str, port: int, timeout: float = 30.0,
                *, die_with_parent: bool = False) -> Service:
    """Start ``redis-server`` on 127.0.0.1:``port`` with AOF on (``appendonly yes``), data in
    ``data_dir``, in the foreground of its own session; wait until it answers ``PING``."""
    return wait_ready(launch_redis(data_dir, log_dir, port, die_with_parent=die_with_parent),
                      timeout)


def launch_s3(log_dir: Path | str, port: int, *, die_with_parent: bool = False) -> Service:
    """Start moto's S3-compatible server without waiting; see :func:`start_s3`."""
    _check_port_free(port, "s3 (moto)")
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    service = _spawn("s3", cmd, log_dir, endpoint=f"http://127.0.0.1:{port}",
                     marker="moto.server", env=env, die_with_parent=die_with_parent)
    service.check = lambda: http_status("127.0.0.1", port, "/") > 0
    return service


def start_s3(log_dir: Path | str, port: int, timeout: float = 30.0, *,
             die_with_parent: bool = False) -> Service:
    """Start moto's server (``python -m moto.server``, this interpreter) on 127.0.0.1:``port``;
    wait until it answers HTTP. Any access key/secret is accepted."""
    return wait_ready(launch_s3(log_dir, port, die_with_parent=die_with_parent), timeout)


# ---- influent's own processes ------------------------------------------------------------


def _influent_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.as_env())
    env.update(extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "localhost") else host


def launch_worker(settings: Settings, log_dir: Path | str, *, die_with_parent: bool = False,
                  name: str = "worker", args: Sequence[str] = (),
                  extra_env: dict[str, str] | None = None) -> Service:
    """Start ``python -m influent.cli worker`` (the Faust worker) without waiting; its log is
    ``<log_dir>/<name>.log`` (tests run several workers, each under its own name)."""
    cmd = [sys.executable, "-m", "influent.cli", "worker", *args]
    service = _spawn(name, cmd, log_dir, endpoint=f"web :{settings.worker_web_port}",
                     marker="influent.cli worker", env=_influent_env(settings, extra_env),
                     cwd=PROJECT_ROOT, die_with_parent=die_with_parent)
    path, offset, port = service.log_path, service.log_offset, settings.worker_web_port

    def check() -> bool:
        with open(path, "rb") as fh:
            fh.seek(offset)
            if b"Ready" in fh.read():  # Faust logs "[^Worker]: Ready"
                return True
        return http_status("127.0.0.1", port, "/") > 0

    service.check = check
    return service


def start_worker(settings: Settings, log_dir: Path | str, timeout: float = 120.0, *,
                 die_with_parent: bool = False) -> Service:
    """Start the Faust worker; healthy when alive and it logged ``Ready`` or its web port
    (``settings.worker_web_port``) answers HTTP."""
    return wait_ready(launch_worker(settings, log_dir, die_with_parent=die_with_parent),
                      timeout)


def launch_api(settings: Settings, log_dir: Path | str, *,
               die_with_parent: bool = False) -> Service:
    """Start ``python -m influent.cli api`` (the query API) without waiting."""
    cmd = [sys.executable, "-m", "influent.cli", "api"]
    service = _spawn("api", cmd, log_dir, endpoint=settings.http_url,
                     marker="influent.cli api", env=_influent_env(settings), cwd=PROJECT_ROOT,
                     die_with_parent=die_with_parent)
    host, port = _probe_host(settings.http_host), settings.http_port
    service.check = lambda: http_status(host, port, "/health") == 200
    return service


def start_api(settings: Settings, log_dir: Path | str, timeout: float = 60.0, *,
              die_with_parent: bool = False) -> Service:
    """Start the query API; healthy when ``GET http://<http_bind>/health`` returns 200."""
    return wait_ready(launch_api(settings, log_dir, die_with_parent=die_with_parent), timeout)
