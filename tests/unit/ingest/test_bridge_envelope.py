"""MQTT message → raw envelope conversion and in-order MQTT acks (pure functions)."""

from __future__ import annotations

import base64

import pytest

from devicefleet_common.schemas import content_message_id
from devicefleet_ingest.bridge.acks import AckQueue
from devicefleet_ingest.bridge.envelope import device_timestamp, mqtt_envelope, topic_device_id

RECEIVED = 1_800_000_000.0


def test_json_payload_with_message_id_property() -> None:
    envelope = mqtt_envelope(
        "sensors/sensor-demo-00001",
        b'{"timestamp":"2026-11-23T16:00:00Z","temperature":21.5}',
        [("traceparent", "00-x"), ("message-id", "sensor-demo-00001:1:0")],
        RECEIVED,
    )

    assert envelope.message_id == "sensor-demo-00001:1:0"
    assert envelope.device_id == "sensor-demo-00001"
    assert envelope.original_topic == "sensors/sensor-demo-00001"
    assert envelope.payload == {"timestamp": "2026-11-23T16:00:00Z", "temperature": 21.5}
    assert envelope.payload_encoding == "json"
    assert envelope.timestamp == 1795449600.0
    assert envelope.received_at == RECEIVED
    assert envelope.source == "mqtt"


def test_without_message_id_the_content_id_is_stable() -> None:
    topic, payload = "cmnd/f2-e4fd45f654be/access-control-mode/J1/door-sensors", b'{"a": true}'
    first = mqtt_envelope(topic, payload, [], RECEIVED)
    redelivered = mqtt_envelope(topic, payload, [], RECEIVED + 5)

    assert first.device_id == "f2-e4fd45f654be"
    assert first.message_id == content_message_id("f2-e4fd45f654be", topic, payload)
    assert redelivered.message_id == first.message_id
    assert first.timestamp == RECEIVED  # no device time: receive time


def test_text_payload() -> None:
    envelope = mqtt_envelope("trucks/T-1/telemetry", b"speed=12", [], RECEIVED)
    assert (envelope.payload, envelope.payload_encoding) == ("speed=12", "text")
    assert envelope.device_id == "T-1"


def test_binary_payload_is_base64() -> None:
    raw = b"\xff\x00\xfe"
    envelope = mqtt_envelope("sensors/s1", raw, [], RECEIVED)
    assert envelope.payload_encoding == "base64"
    assert base64.b64decode(envelope.payload) == raw


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("sensors/a/b/c", "a"),  # unknown layout: second segment, dead-lettered downstream
        ("cmnd/not-an-f2/mode/J1/x", "not-an-f2"),
        ("lonely", "unknown"),
        ("x//y", "unknown"),
    ],
)
def test_unknown_topic_layout_is_still_forwarded(topic: str, device: str) -> None:
    assert topic_device_id(topic) == device
    assert mqtt_envelope(topic, b"{}", [], RECEIVED).device_id == device


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T16:00:00Z", 1795449600.0),
        ("2026-11-23T17:00:00+01:00", 1795449600.0),
        ("2026-11-23T16:00:00", 1795449600.0),  # naive (seed 004 style): UTC
        (1795449600, 1795449600.0),
        (1795449600.5, 1795449600.5),
        ("yesterday", None),
        (True, None),
        (None, None),
    ],
)
def test_device_timestamp(value: object, expected: float | None) -> None:
    assert device_timestamp(value) == expected


def test_bad_timestamp_falls_back_to_receive_time() -> None:
    envelope = mqtt_envelope("sensors/s1", b'{"timestamp": "soon"}', [], RECEIVED)
    assert envelope.timestamp == RECEIVED


def test_acks_released_in_receive_order() -> None:
    acks = AckQueue()
    first, second, third = acks.add(10), acks.add(11), acks.add(12)

    assert acks.delivered(second) == []  # waits for the older one
    assert acks.delivered(first) == [10, 11]
    assert len(acks) == 1
    acks.clear()  # connection lost: never ack on the new connection
    assert acks.delivered(third) == []
