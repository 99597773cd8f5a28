"""Session-wide real services for the tests: Kafka (KRaft), Redis and an S3 endpoint (moto).

They are started with the same code as ``influent dev`` (:mod:`influent.devstack`), on free
ports, in a pytest temp dir (logs under ``<basetemp>/services0/logs`` stay for post-mortems).

* Only the services some collected test needs are started, all launched at once at the first
  test that needs one (Redis and moto start while Kafka formats and boots), then each fixture
  waits for its own service's health check.
* A service that cannot start fails every test that needs it, with the reason and the tail of
  its log -- never a skip. Only a port taken by another process between probing and binding
  gets new ports and another launch (up to three in all). Missing ``redis-server`` is installed with apt-get (Debian) first;
  the Kafka jars are resolved with Maven once into ``~/.cache/influent``.
* Children die with the test session (SIGKILL via PR_SET_PDEATHSIG even if pytest is killed)
  and are stopped cleanly at the end of the session.

Fixtures: ``kafka_bootstrap`` ("127.0.0.1:<port>"), ``redis_url``
("redis://127.0.0.1:<port>/0"), ``s3_endpoint`` ("http://127.0.0.1:<port>", any access
key/secret), their :class:`~influent.devstack.Service` objects ``kafka_service``,
``redis_service``, ``s3_service``, and the function-scoped ``settings``.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(ROOT))

from influent import devstack  # noqa: E402
from influent.config import Settings  # noqa: E402

#: Which service each fixture needs (a test needs a service when its fixture closure has one).
_NEEDS = {
    "kafka_bootstrap": "kafka", "kafka_service": "kafka",
    "redis_url": "redis", "redis_service": "redis",
    "s3_endpoint": "s3", "s3_service": "s3",
}
#: Launch order: the quick ones first, so they boot while Kafka formats its storage.
_LAUNCH_ORDER = ("s3", "redis", "kafka")
_TIMEOUTS = {"kafka": 90.0, "redis": 30.0, "s3": 30.0}
_PORT_CLASH_RETRIES = 3  # launches of a service whose port another process took meanwhile
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"


class ServiceHub:
    """Launches the session's services once, waits for each on first use, stops them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.services: dict[str, devstack.Service] = {}
        self.ready: set[str] = set()
        self.errors: dict[str, str] = {}

    def launch(self, names: set[str]) -> None:
        for name in _LAUNCH_ORDER:
            if name not in names or name in self.services or name in self.errors:
                continue
            self._relaunch(name, 0)

    def _relaunch(self, name: str, first_attempt: int) -> None:
        """Launch ``name``, on fresh ports again while the reason is a port in use."""
        for attempt in range(first_attempt, _PORT_CLASH_RETRIES):
            try:
                self.services[name] = self._launch(name, attempt)
                return
            except devstack.DevstackError as exc:
                if "already in use" not in str(exc) or attempt == _PORT_CLASH_RETRIES - 1:
                    self.errors[name] = f"{name} could not start: {exc}"
                    return

    def _launch(self, name: str, attempt: int = 0) -> devstack.Service:
        # Children are started from the main thread: PR_SET_PDEATHSIG follows that thread.
        if name == "kafka":
            port, controller_port = devstack.free_ports(2)
            return devstack.launch_kafka(self.root / f"kafka{attempt or ''}", self.logs, port,
                                         controller_port, die_with_parent=True, learn_classes=True)
        if name == "redis":
            devstack.ensure_redis_installed()
            return devstack.launch_redis(self.root / f"redis{attempt or ''}", self.logs,
                                         devstack.free_port(), die_with_parent=True)
        return devstack.launch_s3(self.logs, devstack.free_port(), die_with_parent=True)

    def get(self, name: str) -> devstack.Service:
        self.launch({name})
        for attempt in range(1, _PORT_CLASH_RETRIES + 1):
            if name in self.errors or name in self.ready:
                break
            try:
                devstack.wait_ready(self.services[name], _TIMEOUTS[name])
                self.ready.add(name)
            except devstack.DevstackError as exc:
                if "already in use" not in str(exc) or attempt == _PORT_CLASH_RETRIES:
                    self.errors[name] = f"{name} could not start: {exc}"
                    break
                # another process took the free port between probing and binding: new ports
                devstack.stop(self.services[name], timeout=15)
                self._relaunch(name, attempt)
        if name in self.errors:
            pytest.fail(self.errors[name], pytrace=False)
        service = self.services[name]
        if not service.alive():
            pytest.fail(f"{name} died during the session; log {service.log_path}:\n"
                        f"{service.log_tail()}", pytrace=False)
        return service

    def close(self) -> None:
        for name in reversed(_LAUNCH_ORDER):
            if name in self.services:
                devstack.stop(self.services[name], timeout=15)


@pytest.fixture(scope="session")
def service_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The session's :class:`ServiceHub`; launches every service the collected tests need."""
    hub = ServiceHub(tmp_path_factory.mktemp("services"))
    needed = {_NEEDS[f] for item in request.session.items
              for f in getattr(item, "fixturenames", ()) if f in _NEEDS}
    try:
        hub.launch(needed)
        yield hub
    finally:
        hub.close()


@pytest.fixture(scope="session")
def kafka_service(service_hub: ServiceHub) -> devstack.Service:
    return service_hub.get("kafka")


@pytest.fixture(scope="session")
def redis_service(service_hub: ServiceHub) -> devstack.Service:
    return service_hub.get("redis")


@pytest.fixture(scope="session")
def s3_service(service_hub: ServiceHub) -> devstack.Service:
    return service_hub.get("s3")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: devstack.Service) -> str:
    """"127.0.0.1:<port>" of a single-node KRaft broker (topic auto-creation off)."""
    return kafka_service.endpoint


@pytest.fixture(scope="session")
def redis_url(redis_service: devstack.Service) -> str:
    """"redis://127.0.0.1:<port>/0" of a redis-server with AOF on."""
    return redis_service.endpoint


@pytest.fixture(scope="session")
def s3_endpoint(s3_service: devstack.Service) -> str:
    """"http://127.0.0.1:<port>" of a moto S3 server (credentials: testing/testing)."""
    return s3_service.endpoint


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, s3_endpoint: str,
             tmp_path: Path) -> Settings:
    """Settings wired to the session's services, unique per test.

    Unique ``topic_prefix`` (so topics, the Faust app id and consumer groups never clash),
    default db, worker id and free ports for the worker web server and the HTTP API;
    ``state_dir`` in the test's tmp dir (so the object store defaults to a local folder
    there; use ``settings.replace(object_store="s3://<bucket>")`` after creating the bucket
    on ``s3_endpoint`` to test S3); ``partitions=4``.
    """
    tag = uuid.uuid4().hex[:8]
    web_port, http_port = devstack.free_ports(2)
    return Settings(
        state_dir=tmp_path / "state",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        s3_endpoint=s3_endpoint,
        s3_access_key=S3_ACCESS_KEY,
        s3_secret_key=S3_SECRET_KEY,
        topic_prefix=f"t{tag}.",
        default_db=f"db_{tag}",
        partitions=4,
        worker_id=f"worker-{tag}",
        worker_web_port=web_port,
        http_bind=f"127.0.0.1:{http_port}",
    )


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory):
    """A real InfluxDB 1.x on loopback, loaded with the InfluxQL compatibility data."""
    from tests.influxql_compat.loader import HERE
    from tests.influxql_compat.server import start_influxdb, wait_until

    server = start_influxdb(tmp_path_factory.mktemp("influxdb1"))
    try:
        for db, name in (("compat", "data.lp"), ("other", "other.lp")):
            status, body = server.request("POST", "/query", {"q": f'CREATE DATABASE "{db}"'})
            assert status == 200, body
            server.write(db, (HERE / name).read_bytes())
        assert wait_until(lambda: "series" in server.query("SELECT count(*) FROM cpu", "compat")
                          ["results"][0])
        yield server
    finally:
        server.stop()
