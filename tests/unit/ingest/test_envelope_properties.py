"""Properties of the envelope parsers on untrusted input: the MQTT bridge's payload, topic and
properties, the HTTP body, the topic layouts. They never raise on what a device can send, and
what they build round-trips through Kafka unchanged."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devicefleet_common.schemas import (
    DEVICE_ID_PATTERN,
    RawEnvelope,
    TelemetryBatchIn,
    TelemetryIn,
    content_message_id,
)
from devicefleet_common.topics import TopicInfo, f2_topic, parse_topic, sensor_topic, truck_topic
from devicefleet_ingest.bridge.envelope import (
    KEPT_PAYLOAD_BYTES,
    MAX_RECORD_BYTES,
    decode_payload,
    device_timestamp,
    mqtt_envelope,
    too_large_envelope,
    topic_device_id,
)
from devicefleet_ingest.envelope import http_envelope

RECEIVED = 1_800_000_000.0

# What MQTT can carry: a UTF-8 topic without NUL or wildcards, any payload bytes.
mqtt_topics = st.text(
    st.characters(exclude_characters="\x00+#", exclude_categories=["Cs"]), max_size=60
) | st.sampled_from(["sensors/s-1", "trucks/T-1/telemetry", "cmnd/f2-0123456789ab/m/J1/sirens"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=8,
)
payload_bytes = (
    st.binary(max_size=200)
    | json_values.map(orjson.dumps)
    | st.dictionaries(
        st.sampled_from(["timestamp", "temperature"]),
        st.floats() | st.integers() | st.text() | st.booleans(),
    ).map(lambda d: json.dumps(d).encode())  # NaN/Infinity literals: not JSON for orjson
)
properties = st.lists(st.tuples(st.sampled_from(["message-id", "traceparent", "x"]), st.text()))


@given(mqtt_topics, payload_bytes, properties)
@example("sensors/s1", b'{"timestamp": 1e400}', [])
@example("sensors/s1", b'{"timestamp": ' + b"9" * 400 + b"}", [])
@example("sensors/s1", b'{"timestamp": NaN}', [])
@example("sensors/s1", b"\xff\xfe", [])
@example("", b"", [])
def test_every_mqtt_message_becomes_a_faithful_envelope(
    topic: str, payload: bytes, props: list[tuple[str, str]]
) -> None:
    envelope = mqtt_envelope(topic, payload, props, RECEIVED)

    # Round trip through Kafka: the processor reads back exactly what the bridge wrote.
    assert RawEnvelope.model_validate_json(envelope.model_dump_json()) == envelope
    # Nothing of the payload is lost, whatever the encoding it needed.
    if envelope.payload_encoding == "json":
        assert envelope.payload == orjson.loads(payload)
    elif envelope.payload_encoding == "text":
        assert envelope.payload.encode() == payload
    else:
        assert base64.b64decode(envelope.payload) == payload
    assert envelope.original_topic == topic
    assert envelope.device_id == topic_device_id(topic)
    given_id = next((v for k, v in props if k == "message-id"), "")
    assert envelope.message_id == (
        given_id or content_message_id(envelope.device_id, topic, payload)
    )
    assert math.isfinite(envelope.timestamp)


@given(json_values | st.floats() | st.integers() | st.datetimes().map(datetime.isoformat))
@example(10**400)
@example(math.inf)
@example("9999-12-31T23:59:59-23:59")
def test_device_timestamp_is_a_finite_number_or_none(value: Any) -> None:
    seconds = device_timestamp(value)
    assert seconds is None or math.isfinite(seconds)


@given(st.binary(max_size=100))
def test_decode_payload_keeps_every_byte(payload: bytes) -> None:
    value, encoding = decode_payload(payload)
    recovered = {
        "json": lambda: orjson.loads(payload),
        "text": lambda: value.encode(),
        "base64": lambda: base64.b64decode(value),
    }[encoding]()
    assert recovered == (value if encoding == "json" else payload)


device_ids = st.from_regex(DEVICE_ID_PATTERN.replace("$", r"\Z"), fullmatch=True)
f2_ids = st.from_regex(r"f2-[0-9a-f]{12}", fullmatch=True)
segments = st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)


@given(device_ids, f2_ids, segments, segments)
def test_topic_layouts_round_trip(device: str, f2: str, mode: str, component: str) -> None:
    assert parse_topic(truck_topic(device)) == TopicInfo(device, "truck")
    assert parse_topic(sensor_topic(device)) == TopicInfo(device, "generic")
    controller = parse_topic(f2_topic(f2, mode, component))
    assert controller is not None
    assert (controller.device_id, controller.connector_mode, controller.component_type) == (
        f2,
        mode,
        component,
    )


@given(mqtt_topics | st.text())
@example("sensors/s1\n")  # matched before parse_topic used fullmatch
@example("trucks/T-1/telemetry\n")
def test_a_parsed_topic_is_exactly_its_layout(topic: str) -> None:
    info = parse_topic(topic)
    if info is None:
        return
    rebuilt = {
        "f2": lambda: f2_topic(
            info.device_id, info.connector_mode or "", info.component_type or ""
        ),
        "truck": lambda: truck_topic(info.device_id),
        "generic": lambda: sensor_topic(info.device_id),
        None: lambda: f"http/{info.device_id}",
    }[info.profile]()
    assert rebuilt == topic


@given(st.binary(max_size=300))
@example(b'{"device_id": "s", "boot_epoch": 1, "sequence": 1, "timestamp": NaN, "payload": {}}')
def test_http_body_parsers_raise_only_validation_errors(body: bytes) -> None:
    for model in (TelemetryIn, TelemetryBatchIn):
        with contextlib.suppress(pydantic.ValidationError):
            model.model_validate_json(body)


@given(
    device_id=device_ids,
    boot_epoch=st.integers(0, 2**53),
    sequence=st.integers(0, 2**53),
    timestamp=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        # RFC 3339 offsets are whole minutes (historic zones had seconds).
        timezones=st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    ),
    topic=st.none() | st.text(max_size=256),
    payload=st.dictionaries(st.text(), json_values | st.integers(min_value=2**64), max_size=4),
)
def test_http_reading_round_trips_into_the_envelope(
    device_id: str,
    boot_epoch: int,
    sequence: int,
    timestamp: datetime,
    topic: str | None,
    payload: dict[str, Any],
) -> None:
    body = {
        "device_id": device_id,
        "boot_epoch": boot_epoch,
        "sequence": sequence,
        "timestamp": timestamp.isoformat(),
        "topic": topic,
        "payload": payload,
    }
    reading = TelemetryIn.model_validate_json(json.dumps(body))
    envelope = http_envelope(reading, RECEIVED)
    read_back = RawEnvelope.model_validate_json(envelope.model_dump_json())

    assert read_back == envelope
    assert read_back.message_id == f"{device_id}:{boot_epoch}:{sequence}"
    assert read_back.payload == payload  # integers beyond float range included
    assert read_back.timestamp == timestamp.astimezone(UTC).timestamp()
    assert read_back.original_topic == (topic or f"http/{device_id}")


@pytest.mark.parametrize(
    ("topic", "device"),
    [("sensors/s1\n", "s1\n"), ("sensors/" + "x" * 300, "x" * 300), ("a/\x01", "\x01")],
)
def test_unparseable_topics_still_name_a_device(topic: str, device: str) -> None:
    # Forwarded under the topic's second segment; the processor dead-letters them
    # (invalid_device_id) instead of looking such a name up in the registry.
    assert topic_device_id(topic) == device
    assert mqtt_envelope(topic, b"{}", [], RECEIVED).device_id == device


@given(st.binary(min_size=1, max_size=20_000))
def test_a_too_large_message_keeps_its_identity_and_head(payload: bytes) -> None:
    envelope = mqtt_envelope("sensors/s1", payload, [("message-id", "s1:1:0")], RECEIVED)
    dead = too_large_envelope(envelope, payload)

    assert (dead.message_id, dead.device_id, dead.original_topic) == ("s1:1:0", "s1", "sensors/s1")
    assert dead.payload_encoding == "base64"
    assert base64.b64decode(dead.payload) == payload[:KEPT_PAYLOAD_BYTES]
    assert len(dead.model_dump_json()) < MAX_RECORD_BYTES
