"""POST /ingest status codes, bodies, envelope and headers, with a fake producer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from devicefleet_common.schemas import RawEnvelope

from .fakes import Api, reading

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def test_accepted_after_produce_with_envelope_and_headers(api: Api) -> None:
    before = time.time()
    response = api.client.post("/ingest", json=reading(7), headers={"traceparent": TRACEPARENT})

    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "message_id": "sensor-1:1700000000:7"}
    [record] = api.producer.records
    assert record.topic == "raw_iot_data"
    assert record.key == b"sensor-1"
    envelope = RawEnvelope.model_validate(record.envelope)
    assert envelope.message_id == "sensor-1:1700000000:7"
    assert envelope.original_topic == "http/sensor-1"
    assert envelope.timestamp == 1767225600.0
    assert envelope.source == "http"
    assert envelope.payload == {"temperature": 21.5}
    assert before <= envelope.received_at <= time.time()
    assert record.header("message-id") == "sensor-1:1700000000:7"
    traceparent = record.header("traceparent")
    assert traceparent is not None
    assert traceparent.split("-")[1] == TRACE_ID  # the device's trace continues into Kafka


def test_topic_from_body_is_kept(api: Api) -> None:
    api.client.post("/ingest", json=reading(topic="trucks/sensor-1/telemetry"))
    assert api.producer.records[0].envelope["original_topic"] == "trucks/sensor-1/telemetry"


def test_duplicate_is_409(api: Api) -> None:
    assert api.client.post("/ingest", json=reading(1)).status_code == 200
    response = api.client.post("/ingest", json=reading(1))

    assert response.status_code == 409
    assert response.json() == {"status": "duplicate", "message_id": "sensor-1:1700000000:1"}
    assert len(api.producer.records) == 1


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({k: v for k, v in reading().items() if k != "payload"}, "payload", "Field required"),
        ({**reading(), "sequence": "abc"}, "sequence", "valid integer"),
        (reading(device_id="bad/id"), "device_id", "should match pattern"),
        (reading(timestamp="2026-01-01T00:00:00"), "timestamp", "timezone"),
        (reading(sequence=-1), "sequence", "greater than or equal to 0"),
        ({**reading(), "extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
    ids=["missing-field", "wrong-type", "bad-device-id", "naive-time", "negative", "extra"],
)
def test_invalid_body_is_400_naming_field(
    api: Api, body: dict[str, Any], field: str, reason: str
) -> None:
    response = api.client.post("/ingest", json=body)

    assert response.status_code == 400
    assert response.json()["status"] == "rejected"
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors
    assert api.producer.records == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b'{"device_id": ', "malformed JSON"), (b'{"device_id": "\xff\xfe"}', "malformed body")],
    ids=["malformed-json", "not-utf8"],
)
def test_undecodable_body_is_400(api: Api, content: bytes, reason: str) -> None:
    response = api.client.post(
        "/ingest", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["reason"].startswith(reason)


def test_body_over_limit_is_413_by_content_length(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=1000)
    response = api.client.post(
        "/ingest", content=b"x" * 1001, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json() == {
        "status": "rejected",
        "reason": "request body exceeds 1000 bytes",
        "errors": [],
    }


def test_chunked_body_over_limit_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=1000)
    chunks = iter([b"x" * 600, b"x" * 600])  # no Content-Length: enforced while reading
    response = api.client.post(
        "/ingest", content=chunks, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["reason"] == "request body exceeds 1000 bytes"


def test_injected_overload_is_503_with_retry_after(make_api: Callable[..., Api]) -> None:
    api = make_api(overload_rate=1.0, retry_after_seconds=3)
    response = api.client.post("/ingest", json=reading())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json() == {"status": "unavailable", "reason": "overloaded (injected fault)"}
    assert api.producer.records == []


def test_buffer_error_is_503_and_retry_succeeds(api: Api) -> None:
    api.producer.buffer_full = True
    response = api.client.post("/ingest", json=reading())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["reason"] == "kafka: local queue full"

    api.producer.buffer_full = False
    assert api.client.post("/ingest", json=reading()).status_code == 200


def test_delivery_failure_is_503_and_not_remembered(api: Api) -> None:
    api.producer.fail_ids = {"sensor-1:1700000000:1"}
    response = api.client.post("/ingest", json=reading(1))
    assert response.status_code == 503
    assert "Message timed out" in response.json()["reason"]

    api.producer.fail_ids = set()
    assert api.client.post("/ingest", json=reading(1)).status_code == 200


def test_produce_timeout_is_503(make_api: Callable[..., Api]) -> None:
    api = make_api(produce_timeout_seconds=0.05)
    api.producer.delay = 0.5
    response = api.client.post("/ingest", json=reading())

    assert response.status_code == 503
    assert response.json()["reason"] == "kafka: produce timed out"


def test_counters_reconcile(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=2000)
    client = api.client
    client.post("/ingest", json=reading(1))  # accepted
    client.post("/ingest", json=reading(1))  # duplicate
    client.post("/ingest", json=reading(device_id="a b"))  # rejected
    client.post("/ingest", content=b"{", headers={"content-type": "application/json"})
    client.post("/ingest", content=b"x" * 3000, headers={"content-type": "application/json"})
    api.producer.fail_ids = {"sensor-1:1700000000:2"}
    client.post("/ingest", json=reading(2))  # failed
    client.post("/ingest/batch", json={"messages": [reading(1), reading(3), reading(4)]})
    client.app.state.settings.overload_rate = 1.0  # type: ignore[attr-defined]
    client.post("/ingest", json=reading(5))  # overloaded

    outcomes = {
        o: api.sample("ingest_messages_total", outcome=o)
        for o in ("accepted", "duplicate", "rejected", "overloaded", "failed")
    }
    assert outcomes == {
        "accepted": 3,
        "duplicate": 2,
        "rejected": 3,
        "overloaded": 1,
        "failed": 1,
    }
    assert api.sample("ingest_messages_received_total") == sum(outcomes.values())
    single = sum(
        api.sample("http_requests_total", method="POST", route="/ingest", status=s)
        for s in ("200", "409", "400", "413", "503")
    )
    assert single == 7  # one outcome per single request; the batch added its 3 items
    assert api.sample("ingest_in_flight_messages") == 0
    assert api.sample("kafka_produce_duration_seconds_count") == 3


def test_openapi_declares_error_responses(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    single = schema["paths"]["/ingest"]["post"]["responses"]
    batch = schema["paths"]["/ingest/batch"]["post"]["responses"]

    assert set(single) == {"200", "400", "409", "413", "503"}
    assert set(batch) == {"200", "400", "413", "503"}
    assert "Retry-After" in single["503"]["headers"]


def test_health_and_ready(api: Api) -> None:
    assert api.client.get("/health").json() == {"status": "ok"}
    assert api.client.get("/ready").status_code == 200


def test_not_ready_without_kafka(make_api: Callable[..., Api]) -> None:
    api = make_api()
    api.producer.reachable = False
    response = api.client.get("/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_shutdown_closes_producer(make_api: Callable[..., Api]) -> None:
    api = make_api()
    api.client.__exit__(None, None, None)
    assert api.producer.closed


def test_metrics_exposition(api: Api) -> None:
    api.client.post("/ingest", json=reading())
    text = api.client.get("/metrics").text

    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "ingest_messages_total",
        "kafka_produce_duration_seconds_bucket",
        "ingest_in_flight_messages",
    ):
        assert name in text
    assert 'route="/ingest"' in text
    # `promtool check metrics` runs on the live service in tests/integration/test_observability.
