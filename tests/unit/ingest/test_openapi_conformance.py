"""Schemathesis against the ingest API in process (fake producer, no Kafka): valid and invalid
requests generated from the OpenAPI spec; every answer must be a status the spec declares for
the operation, with the declared body and headers; no 5xx but the declared 503 (Retry-After);
invalid data rejected, valid data accepted."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from devicefleet_ingest.main import create_app
from devicefleet_ingest.settings import IngestSettings

from .fakes import FakeProducer

# Small, so that generated batches also reach the declared 413.
MAX_BODY_BYTES = 64 * 1024


def api_schema(producer: FakeProducer, **settings: Any) -> OpenApiSchema:
    app = create_app(
        IngestSettings(max_body_bytes=MAX_BODY_BYTES, **settings),
        producer,
        registry=CollectorRegistry(),
        tracer_provider=TracerProvider(),
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=150
    )
    checks = schema.config.checks
    # 413 is the declared answer to a body over max_body_bytes, valid or not (1000 valid
    # messages make a batch larger than 64 KiB).
    for check in (checks.positive_data_acceptance, checks.negative_data_rejection):
        check.expected_statuses = [*check.expected_statuses, "413"]
    return schema


healthy = api_schema(FakeProducer())
# Kafka down and one request in two refused as overloaded: the declared 503s, with their body
# and Retry-After header, are checked against the spec like every other answer.
degraded = api_schema(FakeProducer(reachable=False), overload_rate=0.5)
degraded.config.checks.not_a_server_error.expected_statuses = ["2xx", "3xx", "4xx", "503"]
unsettled = settings(suppress_health_check=list(HealthCheck), deadline=None)


@healthy.parametrize()
@unsettled
def test_every_answer_is_declared(case: schemathesis.Case) -> None:
    case.call_and_validate()


@degraded.parametrize()
@unsettled
def test_every_answer_is_declared_when_degraded(case: schemathesis.Case) -> None:
    response = case.call_and_validate()
    if response.status_code == 503:
        assert response.json()["status"] == "unavailable"
        if case.path.startswith("/ingest"):
            assert response.headers.get("retry-after") == ["1"]


def test_spec_is_valid_openapi_and_declares_the_errors() -> None:
    healthy.validate()  # against the OpenAPI meta-schema
    paths = healthy.raw_schema["paths"]
    assert set(paths["/ingest"]["post"]["responses"]) == {"200", "400", "409", "413", "503"}
    assert set(paths["/ingest/batch"]["post"]["responses"]) == {"200", "400", "413", "503"}
    assert set(paths["/ready"]["get"]["responses"]) == {"200", "503"}
    for path in paths.values():
        for operation in path.values():
            assert "422" not in operation["responses"]  # the API answers 400 instead
