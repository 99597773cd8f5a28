"""How the compatibility suites compare a 1.x ``/query`` body with influent's."""
from __future__ import annotations

import json
import math
from typing import Any

from tests.influxql_compat.queries import Q


def _sorted_ties(body: dict[str, Any]) -> dict[str, Any]:
    for result in body.get("results", []):
        for series in result.get("series", []):
            series["values"] = sorted(series.get("values", []),
                                      key=lambda row: (row[0], json.dumps(row)))
    return body


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(
            a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def assert_matches(case: Q, expected_bytes: bytes, ours_bytes: bytes) -> None:
    """Byte equality, except for the case's documented relaxations (tie order, float ulps)."""
    if not (case.ties or case.approx):
        assert ours_bytes.decode() == expected_bytes.decode(), case.query
        return
    expected, got = json.loads(expected_bytes), json.loads(ours_bytes)
    if case.ties:
        expected, got = _sorted_ties(expected), _sorted_ties(got)
    if case.approx:
        assert _close(got, expected), case.query
    else:
        assert got == expected, case.query
