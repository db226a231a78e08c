"""Bad HTTP bodies: whatever the bytes, the answer is a 4xx with a reason (or 200/409 for a
valid reading), never a 5xx, and nothing reaches Kafka unless it was accepted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devicefleet_common.schemas import RawEnvelope

from .fakes import Api, FakeProducer, reading

VALID = json.dumps(reading()).encode()
fixture_reused = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutations(body: bytes) -> st.SearchStrategy[bytes]:
    """Truncated, spliced or byte-flipped versions of a valid body."""
    cut = st.integers(0, len(body))
    return (
        cut.map(lambda n: body[:n])
        | st.tuples(cut, st.binary(max_size=8)).map(lambda t: body[: t[0]] + t[1] + body[t[0] :])
        | st.tuples(cut, st.integers(0, 255)).map(
            lambda t: body[: t[0]] + bytes([t[1]]) + body[t[0] + 1 :]
        )
    )


@fixture_reused
@given(
    body=st.binary(max_size=200) | mutations(VALID),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
    path=st.sampled_from(["/ingest", "/ingest/batch"]),
)
@example(body=b"\xff\xfe\x00{", content_type="application/json", path="/ingest")
@example(body=VALID[:-1], content_type="application/json", path="/ingest")
@example(body=b"[" * 5000 + b"]" * 5000, content_type="application/json", path="/ingest")
def test_any_body_gets_a_declared_answer(
    api: Api, body: bytes, content_type: str | None, path: str
) -> None:
    records_before = len(api.producer.records)
    headers = {"content-type": content_type} if content_type else {}
    response = api.client.post(path, content=body, headers=headers)

    assert response.status_code in (200, 400, 409, 413), response.text
    answer = response.json()
    if response.status_code == 409:
        assert answer["status"] == "duplicate"
    elif response.status_code >= 400:
        assert answer["status"] == "rejected"
        assert answer["reason"]
        assert len(api.producer.records) == records_before
    elif response.status_code == 200 and path == "/ingest":
        assert len(api.producer.records) == records_before + 1


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"timestamp": 1_800_000_000}, "timestamp", "RFC 3339"),  # was read as epoch seconds
        ({"timestamp": 0}, "timestamp", "RFC 3339"),
        ({"timestamp": "0"}, "timestamp", "RFC 3339"),  # was read as 1970 (found by schemathesis)
        ({"timestamp": "1800000000"}, "timestamp", "RFC 3339"),
        ({"sequence": "7"}, "sequence", "not a str"),  # was read as 7
        ({"boot_epoch": True}, "boot_epoch", "not a bool"),  # was read as 1
        ({"sequence": 1.5}, "sequence", "fractional part"),
        ({"payload": [1, 2]}, "payload", "valid dictionary"),
        ({"payload": "21.5"}, "payload", "valid dictionary"),
        ({"device_id": 42}, "device_id", "valid string"),
        ({"device_id": "sensor-1\n"}, "device_id", "should match pattern"),
        ({"device_id": "x" * 200}, "device_id", "should match pattern"),
        ({"topic": "t" * 257}, "topic", "at most 256"),
        ({"timestamp": "2026-13-01T00:00:00Z"}, "timestamp", "valid datetime"),
        ({"timestamp": "soon"}, "timestamp", "valid datetime"),
    ],
)
def test_wrong_types_are_400_naming_the_field(
    api: Api, overrides: dict[str, Any], field: str, reason: str
) -> None:
    response = api.client.post("/ingest", json=reading(**overrides))

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors
    assert api.producer.records == []


def test_whole_number_float_is_a_json_integer(api: Api) -> None:
    # JSON Schema (and so the OpenAPI spec) counts 7.0 as an integer.
    response = api.client.post("/ingest", json=reading(sequence=7.0))
    assert response.status_code == 200
    assert response.json()["message_id"] == "sensor-1:1700000000:7"


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime.now(UTC) + timedelta(days=365),
        datetime.now(UTC) - timedelta(days=3650),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
    ids=["next-year", "ten-years-ago", "year-1", "year-9999"],
)
def test_far_timestamps_are_accepted_and_judged_by_the_processor(
    api: Api, timestamp: datetime
) -> None:
    """Policy (docs/reliability.md, "Bad input"): ingest checks the form of the time, the
    processor its plausibility, so a device with a wrong clock loses nothing: its readings
    wait in the dead-letter topic (timestamp_in_future/too_old) for a replay."""
    response = api.client.post("/ingest", json=reading(timestamp=timestamp.isoformat()))

    assert response.status_code == 200
    [record] = api.producer.records
    assert RawEnvelope.model_validate_json(record.value).timestamp == timestamp.timestamp()


def test_hostile_payload_content_is_forwarded_for_the_processor_to_judge(api: Api) -> None:
    # Readings the processor dead-letters (invalid_value / invalid_metric); the API must not
    # crash on or alter them. (A number beyond float range: test_envelope_properties.py.)
    payload = {"temperature": 10**30, "t\x00": 1, "nested": {"deep": [1, None]}, "": "x"}
    response = api.client.post(
        "/ingest",
        content=json.dumps(reading(payload=payload)).encode(),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200
    [record] = api.producer.records
    assert RawEnvelope.model_validate_json(record.value).payload == payload


class RecordLimitProducer(FakeProducer):
    """Refuses what librdkafka refuses at produce time: a record over message.max.bytes."""

    async def produce(
        self, topic: str, key: bytes, value: bytes, headers: list[Any] | None = None
    ) -> object:
        if len(value) > KAFKA_RECORD_LIMIT:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        return await super().produce(topic, key, value, headers)


KAFKA_RECORD_LIMIT = 1_000


@pytest.fixture
def producer() -> FakeProducer:
    return RecordLimitProducer()


def test_message_larger_than_a_kafka_record_is_413_not_a_retried_503(api: Api) -> None:
    big = reading(sequence=1, payload={"blob": "x" * KAFKA_RECORD_LIMIT})
    response = api.client.post("/ingest", json=big)

    assert response.status_code == 413
    assert response.json()["reason"].startswith("message exceeds Kafka's record size limit")
    assert "sensor-1:1700000000:1" in response.json()["reason"]
    assert api.producer.records == []
    assert api.sample("ingest_messages_total", outcome="rejected") == 1
    assert api.sample("ingest_messages_total", outcome="failed") == 0
    # Not remembered: the same id with a smaller payload is accepted.
    assert api.client.post("/ingest", json=reading(sequence=1)).status_code == 200


def test_batch_with_a_message_too_large_is_413_naming_it(api: Api) -> None:
    batch = {"messages": [reading(2), reading(3, payload={"blob": "x" * KAFKA_RECORD_LIMIT})]}
    response = api.client.post("/ingest/batch", json=batch)

    assert response.status_code == 413
    assert response.json()["reason"].endswith("sensor-1:1700000000:3")
    assert [r.envelope["message_id"] for r in api.producer.records] == ["sensor-1:1700000000:2"]
