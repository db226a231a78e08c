"""Schemathesis against the real ingest process of this session's pipeline (real Kafka
behind it): every answer is one the OpenAPI spec declares, no 5xx but the declared 503.
The in-process run with more cases is tests/unit/ingest/test_openapi_conformance.py."""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.integration.conftest import Pipeline


def test_real_ingest_answers_as_declared(pipeline: Pipeline) -> None:
    # Loaded here, not with schemathesis.pytest.from_fixture: its lazy loader sets
    # Function._nodeid, which this pytest no longer has.
    schema = schemathesis.openapi.from_url(f"{pipeline.ingest_url}/openapi.json")
    schema.validate()
    checks = schema.config.checks
    # A batch of valid messages can exceed the body limit: 413 is the declared answer.
    for check in (checks.positive_data_acceptance, checks.negative_data_rejection):
        check.expected_statuses = [*check.expected_statuses, "413"]
    checks.not_a_server_error.expected_statuses = ["2xx", "3xx", "4xx", "503"]
    statuses: Counter[int] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()
        # GET /health and /ready take no input: nothing to make invalid.
        modes = [GenerationMode.POSITIVE]
        if operation.method.lower() == "post":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def answers_as_declared(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=pipeline.ingest_url, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code == 503 and case.path.startswith("/ingest"):
                    assert response.headers.get("retry-after") is not None

            answers_as_declared()

    # Real Kafka acknowledged the valid ones; the invalid ones were refused with a 400.
    assert statuses[200] > 0, statuses
    assert statuses[400] > 0, statuses
