"""The project's own local infrastructure: real Kafka, Redis and S3 processes, managed from Python.

One library serves both ``influent dev up|down|status|install`` and the test-session fixtures
(``tests/conftest.py``), so the stack a developer runs is the stack the tests run.

Services
--------
* **Kafka** -- the Apache Kafka broker jars from Maven Central (``infra/kafka/pom.xml``, resolved
  once by ``mvn`` into ``${XDG_CACHE_HOME:-~/.cache}/influent/kafka-<version>/lib``), one
  single-node KRaft broker+controller on 127.0.0.1 (:func:`start_kafka`), or a cluster of N
  such nodes sharing a cluster id and a controller quorum (:func:`start_kafka_cluster`).
* **Redis** -- Debian's ``redis-server`` with AOF on (:func:`start_redis`);
  :func:`ensure_redis_installed` installs it with ``apt-get`` when it is missing.
* **S3** -- moto's server from the current virtualenv (:func:`start_s3`).
* **worker** / **api** -- ``python -m influent.cli worker|api`` for the dev stack
  (:func:`start_worker`, :func:`start_api`), configured through ``Settings.as_env()``.

Every child is started in its own session (``start_new_session=True``: its own process group,
no controlling terminal), with stdout/stderr appended to one log file per service, and
:func:`stop` terminates the whole group (SIGTERM, then SIGKILL), so nothing is left behind.
Every ``start_*`` waits until the service really answers (a Kafka Metadata request, a Redis
``PING``, an HTTP response) and raises :class:`ServiceStartError` with the tail of the service's
log when it exits early or does not answer in time.

Environment knobs (infrastructure only, not application settings):
``XDG_CACHE_HOME`` (cache root), ``INFLUENT_KAFKA_CDS=0`` (do not learn/use the JVM class-data
archive that makes the broker start about twice as fast), ``INFLUENT_KAFKA_HEAP`` (``-Xmx``,
default ``512m``).

Modules, by job: :mod:`~influent.devstack.install` (prerequisites, the broker jars, the JVM
class-data archive), :mod:`~influent.devstack.processes` (spawning, waiting, stopping, ports,
health probes), :mod:`~influent.devstack.services` (each service's start-up),
:mod:`~influent.devstack.stack` (``influent dev up|down|status``),
:mod:`~influent.devstack.supervisor` (restarting what exits, with backoff),
:mod:`~influent.devstack.supervisor_files` (its pid and status files),
:mod:`~influent.devstack.cli` (the click commands).
"""
from __future__ import annotations

from influent.devstack.install import (KAFKA_VERSION, require, ensure_debian_package,
                                       ensure_redis_installed, kafka_home, kafka_classpath)
from influent.devstack.processes import (DevstackError, MissingPrerequisite, PortInUse,
                                         ServiceStartError, Service, free_port, free_ports,
                                         port_in_use, kafka_metadata, redis_ping, http_status,
                                         wait_ready, stop)
from influent.devstack.services import (KafkaNode, KafkaQuorum, launch_kafka_cluster,
                                        start_kafka_cluster)
from influent.devstack.services import (launch_kafka, launch_redis, launch_s3, start_kafka,
                                        start_redis, start_s3, launch_worker, launch_api,
                                        start_worker, start_api)
from influent.devstack.stack import (StackLayout, STACK, dev_up, dev_down, dev_status)
from influent.devstack.supervisor import Backoff, Supervisor, supervise, spawn_supervisor
from influent.devstack.cli import (dev)

__all__ = ["KafkaNode", "KafkaQuorum", "launch_kafka_cluster", "start_kafka_cluster",
           "KAFKA_VERSION", "ensure_debian_package", "DevstackError", "MissingPrerequisite", "PortInUse",
           "ServiceStartError", "Service", "require", "ensure_redis_installed", "kafka_home",
           "kafka_classpath", "free_port", "free_ports", "port_in_use", "kafka_metadata",
           "redis_ping", "http_status", "launch_kafka", "launch_redis", "launch_s3", "wait_ready",
           "start_kafka", "start_redis", "start_s3", "launch_worker", "launch_api", "start_worker",
           "start_api", "stop", "StackLayout", "STACK", "dev_up", "dev_down",
           "dev_status", "Backoff", "Supervisor", "supervise", "spawn_supervisor", "dev"]
