"""The API fuzzer: property-based requests against every operation of a running API's
``/openapi.json`` (schemathesis generates them from the published parameters and bodies,
hypothesis drives it), and the checks on every answer.

Checks, per request: an answer comes within the time limit (no hang), the connection is not
dropped (no crash), and a 5xx is one the operation documents (query_api/openapi.py); requests
without a valid token to a server with authentication on must get 401. Used by
``tests/test_api_fuzz.py`` (a bounded run in ``make test``) and ``benchmarks/fuzz.py`` (the big
run, ``make fuzz``).
"""
from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from influent import devstack
from influent.config import Settings
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY

OPEN_PATHS = frozenset({"/health", "/api/v1/health", "/ping", "/ready"})
#: Operations that create tokens: on an open server the first one turns authentication on, so
#: an open run sends them last.
TOKEN_CREATING = frozenset({"/api/v3/configure/token/admin", "/api/v3/configure/token/named_admin",
                            "/api/v3/configure/token", "/api/v3/enterprise/configure/token"})
MAX_REPORTED_FAILURES = 50


@dataclass(frozen=True)
class Credentials:
    """How the requests of one pass present themselves: ``valid`` says whether the token (if
    any) is accepted by the server, so that a refusal (401) can be told from a pass-through."""

    name: str
    token: str | None = None
    valid: bool = True

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class FuzzReport:
    """Answers by status code and every failed check (with a curl line to reproduce it)."""

    statuses: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def fail(self, what: str) -> None:
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(what)

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return f"{self.requests} requests; by status: {codes}"


@dataclass
class Fuzzer:
    """Sends generated requests to one API process (``base_url``) and checks each answer."""

    base_url: str
    timeout: float = 60.0
    auth_enabled: bool = False
    schema_token: str | None = None  # /openapi.json needs a token when authentication is on
    report: FuzzReport = field(default_factory=FuzzReport)

    def __post_init__(self) -> None:
        raw = httpx.get(f"{self.base_url}/openapi.json", timeout=self.timeout,
                        headers=Credentials("schema", self.schema_token).headers()).json()
        self.schema = schemathesis.openapi.from_dict(raw)
        self.operations = [r.ok() for r in self.schema.get_all_operations()]
        self.session = requests.Session()

    def run(self, examples: int, credentials: Credentials,
            modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
            seed_base: int = 0, operations: list | None = None) -> FuzzReport:
        """``examples`` generated requests per operation and mode (fewer where the operation
        has fewer distinct requests); every operation, those that create tokens last."""
        chosen = sorted(self.operations if operations is None else operations,
                        key=lambda op: op.path in TOKEN_CREATING)
        for n, (operation, mode) in enumerate(itertools.product(chosen, modes)):
            self._run_operation(operation, mode, examples, credentials, seed_base + n)
        return self.report

    def run_until(self, total: int, examples: int, credentials: Credentials) -> FuzzReport:
        """Rounds of :meth:`run` (new seeds each) until ``total`` requests were sent; the
        operations that create tokens only in the last round (on an open server the first
        token turns authentication on)."""
        others = [op for op in self.operations if op.path not in TOKEN_CREATING]
        tokens = [op for op in self.operations if op.path in TOKEN_CREATING]
        for round_ in itertools.count():
            if self.report.requests + len(tokens) * examples >= total:
                break
            self.run(examples, credentials, seed_base=round_ * 7919, operations=others)
        return self.run(examples, credentials, seed_base=7, operations=tokens)

    def _run_operation(self, operation, mode: GenerationMode, examples: int,
                       credentials: Credentials, seed_value: int) -> None:
        documented = {int(code) for code in operation.definition.raw.get("responses", {})
                      if code.isdigit()}

        @seed(seed_value)
        @settings(max_examples=examples, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case) -> None:
            self.check(case, documented, credentials)

        try:
            send()
        except Unsatisfiable:  # negative mode, an operation with nothing that can be invalid
            if mode is not GenerationMode.NEGATIVE:
                raise

    def check(self, case, documented: set[int], credentials: Credentials) -> None:
        """Send one generated request and check its answer."""
        label = f"{case.method} {case.path}"
        self.report.requests += 1
        self.report.by_operation[label] += 1
        try:
            response = case.call(base_url=self.base_url, session=self.session,
                                 headers=credentials.headers(), timeout=self.timeout)
        except requests.Timeout:
            self.report.statuses["timeout"] += 1
            self.report.fail(f"no answer within {self.timeout}s: {self._curl(case, credentials)}")
            return
        except requests.ConnectionError as exc:
            self.report.statuses["connection error"] += 1
            self.report.fail(f"connection failed ({exc}): {self._curl(case, credentials)}")
            return
        status = response.status_code
        self.report.statuses[status] += 1
        if status >= 500 and status not in documented:
            self.report.fail(f"undocumented {status} from {label}: {response.text[:300]!r}\n"
                             f"  {self._curl(case, credentials)}")
        refused = self.auth_enabled and not credentials.valid and case.operation.path not in OPEN_PATHS
        if refused and status != 401:
            self.report.fail(f"{label} without a valid token answered {status}, not 401\n"
                             f"  {self._curl(case, credentials)}")

    def _curl(self, case, credentials: Credentials) -> str:
        try:
            return case.as_curl_command(headers=credentials.headers(), base_url=self.base_url)
        except Exception as exc:  # a body curl cannot show (binary): name the case instead
            return f"{case.method} {case.path} query={case.query!r} body={case.body!r} ({exc})"


def module_settings(kafka_bootstrap: str, redis_url: str, s3_endpoint: str, state_dir: Path,
                    **overrides) -> Settings:
    """Settings of one test module's processes (as the ``settings`` fixture's, unique topics
    and catalog) for a module-scoped fixture."""
    tag = uuid.uuid4().hex[:8]
    web_port, http_port = devstack.free_ports(2)
    return Settings(state_dir=state_dir, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                    s3_endpoint=s3_endpoint, s3_access_key=S3_ACCESS_KEY,
                    s3_secret_key=S3_SECRET_KEY, topic_prefix=f"t{tag}.", default_db=f"db_{tag}",
                    worker_id=f"worker-{tag}", worker_web_port=web_port,
                    http_bind=f"127.0.0.1:{http_port}").replace(**overrides)


def healthy(base_url: str, timeout: float = 30.0) -> tuple[int, int]:
    """(``/health`` status, ``/ready`` status) of an API process."""
    return (httpx.get(f"{base_url}/health", timeout=timeout).status_code,
            httpx.get(f"{base_url}/ready", timeout=timeout).status_code)
