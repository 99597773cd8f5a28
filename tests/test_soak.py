"""The short soak (CI form of benchmarks/soak.py): a light mixed load on a stack of its own while
the worker is SIGKILLed, Redis restarts and the Kafka broker restarts; afterwards every
acknowledged row is visible once with its last value and every other check is green."""
from __future__ import annotations

import pytest

from benchmarks.soak import SoakConfig, run_soak
from benchmarks.soak_faults import CI_KINDS, FaultOptions

pytestmark = pytest.mark.integration


def test_short_soak_loses_and_duplicates_nothing_through_worker_redis_and_broker_faults(tmp_path):
    config = SoakConfig(seconds=40, rate=150, kinds=CI_KINDS,
                        faults=FaultOptions(restart_timeout=300), settle_timeout=300)
    report = run_soak(config, tmp_path / "soak")
    summary = {k: report[k] for k in ("rows_lost", "rows_duplicated", "rows_wrong_value",
                                      "faults_injected", "crashes")}
    assert report["faults_injected"] == len(CI_KINDS), summary
    assert [f["kind"] for f in report["faults"]] == list(CI_KINDS)
    assert all(f["recovered"] for f in report["faults"]), report["faults"]
    assert report["rows_checked"] > 0
    assert report["rows_lost"] == 0, report["checks"]["rows"]
    assert report["rows_duplicated"] == 0, report["checks"]["rows"]
    assert report["rows_wrong_value"] == 0, report["checks"]["rows"]
    assert report["bad_lines"] > 0 and report["overwrites"] > 0
    assert not report["crashes"], report["crashes"]
    assert report["checks"]["ok"], report["checks"]
    assert report["ok"]
