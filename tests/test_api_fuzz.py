"""API fuzzing against real processes (a worker, an open API and an API with a token, over the
session's Kafka, Redis and S3): generated requests to every operation of ``/openapi.json``
(tests/api_fuzzing.py) with and without tokens. A bounded number of examples here; the big run
is ``make fuzz`` (benchmarks/fuzz.py)."""
from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from influent import devstack
from influent.config import Settings
from tests import lp_fuzzing
from tests.api_fuzzing import Credentials, Fuzzer, healthy, module_settings
from tests.harness import Proc, start_api, start_worker, wait_for

pytestmark = pytest.mark.integration

TOKEN = "fuzz-bootstrap-token"
REQUEST_TIMEOUT = 60.0  # seconds an answer may take (queries are limited to 20 s below)


class FuzzStack:
    """A worker and two API processes on one set of topics and catalog."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.worker: Proc | None = None
        self.open_api: Proc | None = None
        self.secured_api: Proc | None = None
        self.secured = settings.replace(token=TOKEN, http_bind=f"127.0.0.1:{devstack.free_port()}")

    def start(self) -> "FuzzStack":
        self.open_api = start_api(self.settings)
        self.worker = start_worker(self.settings, self.settings.worker_id, self.settings.worker_web_port)
        self.secured_api = start_api(self.secured)
        return self

    def stop(self) -> None:
        for proc in (self.secured_api, self.worker, self.open_api):
            if proc is not None:
                proc.stop()

    def assert_alive(self) -> None:
        for proc in (self.open_api, self.secured_api, self.worker):
            assert proc.alive(), f"{proc.name} died; log tail:\n{proc.log_text()[-3000:]}"
        assert healthy(self.settings.http_url) == (200, 200)
        assert healthy(self.secured.http_url) == (200, 200)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, s3_endpoint: str, tmp_path_factory):
    settings = module_settings(kafka_bootstrap, redis_url, s3_endpoint,
                               tmp_path_factory.mktemp("fuzz") / "state", partitions=2,
                               query_timeout=20.0)
    fuzz = FuzzStack(settings)
    try:
        yield fuzz.start()
    finally:
        fuzz.stop()


def seed_data(base_url: str, headers: dict[str, str] | None = None) -> None:
    """A database and table named as the schema's examples (``mydb``, ``cpu``), so generated
    requests that use the examples reach the query and lifecycle code."""
    resp = httpx.post(f"{base_url}/api/v3/write_lp", params={"db": "mydb"}, headers=headers,
                      content=b"cpu,host=a usage=1.5 1700000000000000000\n"
                              b"cpu,host=b usage=2.5 1700000001000000000\n", timeout=60)
    assert resp.status_code == 204, resp.text


def assert_clean(fuzzer: Fuzzer) -> None:
    report = fuzzer.report
    assert not report.failures, report.summary() + "\n" + "\n".join(report.failures)
    assert report.requests > 0


@pytest.mark.timeout(900)  # a few hundred requests; far less on an idle machine
def test_every_operation_is_fuzzed_without_undocumented_errors(stack: FuzzStack):
    """The open server, then the server with a token (with it, without it, with a wrong one).
    No hang, no dropped connection, no 5xx an operation does not document; every process is
    alive and healthy afterwards."""
    seed_data(stack.settings.http_url)
    open_fuzzer = Fuzzer(stack.settings.http_url, REQUEST_TIMEOUT)
    open_fuzzer.run(examples=2, credentials=Credentials("open"))
    assert_clean(open_fuzzer)
    assert len({label for label in open_fuzzer.report.by_operation}) == len(open_fuzzer.operations)

    secured = Fuzzer(stack.secured.http_url, REQUEST_TIMEOUT, auth_enabled=True,
                     schema_token=TOKEN)
    secured.run(examples=1, credentials=Credentials("token", TOKEN))
    positive = (GenerationMode.POSITIVE,)
    secured.run(examples=1, credentials=Credentials("none", None, valid=False), modes=positive)
    secured.run(examples=1, credentials=Credentials("wrong", "not-a-token", valid=False),
                modes=positive)
    assert_clean(secured)
    print(open_fuzzer.report.summary(), "|", secured.report.summary())
    stack.assert_alive()


@pytest.mark.timeout(900)
@settings(max_examples=3, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(generated=st.lists(lp_fuzzing.bodies(), min_size=4, max_size=8))
def test_line_protocol_fuzz_through_http_and_kafka(stack: FuzzStack, generated: list) -> None:
    """Generated and mutated line protocol through HTTP and Kafka: 204/400 naming the lines,
    the same lines rejected with reasons on ``influent.rejected``, the same rows on both paths; the worker and the APIs stay alive and healthy."""
    outcomes = lp_fuzzing.fuzz_both_paths(lp_fuzzing.Api(stack.secured, TOKEN), generated)
    print(lp_fuzzing.describe(outcomes))
    stack.assert_alive()


def test_tables_named_in_mixed_case_or_with_a_dot_are_queryable_by_their_quoted_names(
        stack: FuzzStack) -> None:
    """Found by the line protocol fuzz: table ``Fz`` was listed but ``SELECT ... FROM "Fz"``
    answered 'table not found' (registered as ``fz``)."""
    api = lp_fuzzing.Api(stack.secured, TOKEN)
    resp = httpx.post(f"{api.url}/api/v3/write_lp", params={"db": "casedb"}, headers=api.headers,
                      content=b"Mixed,host=a v=1i 1700000000000000000\n"
                              b"dot.ted v=2i 1700000000000000000\n", timeout=60)
    assert resp.status_code == 204, resp.text
    expected = {"Mixed": 1, "dot.ted": 1}
    assert wait_for(lambda: lp_fuzzing.table_rows(api, "casedb") == expected, 120,
                    what="both tables queryable")
