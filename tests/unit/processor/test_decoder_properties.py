"""Properties of the processor on untrusted input: every raw Kafka value gives exactly one
output, decoded or dead-lettered with a documented reason; nothing raises; everything decoded
is storable by the sink."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devicefleet_common.devices import default_parameters, device_id
from devicefleet_common.kafka import header_value
from devicefleet_common.schemas import DLQ_DETAIL_HEADER, DLQ_REASON_HEADER, DecodedRecord
from devicefleet_common.topics import f2_topic, sensor_topic, truck_topic
from devicefleet_ingest.bridge.envelope import mqtt_envelope
from devicefleet_processor.decoders import (
    DecodeError,
    DeviceParams,
    check_timestamp,
    decode_rs485,
)
from devicefleet_processor.pipeline import Output, process
from devicefleet_processor.registry import DeviceRegistry, RegistryUnavailable
from devicefleet_sink.rows import record_rows

NOW = 1_800_000_000.0
MAX_FUTURE, MAX_AGE = 3600.0, 30 * 86400.0
F2 = DeviceParams(device_id("f2", "p", 0), "f2", "p", "site", "F2", default_parameters("f2"))
TRUCK = DeviceParams("truck-p-00000", "truck", "p")
SENSOR = DeviceParams("sensor-p-00000", "generic", "p")
DEVICES = {d.device_id: d for d in (F2, TRUCK, SENSOR)}
DOCS = Path(__file__).parents[3] / "docs" / "pipeline.md"


def documented_reasons() -> set[str]:
    """The ``dlq-reason`` values of the table in docs/pipeline.md."""
    text = DOCS.read_text()
    table = text[text.index("Dead-letter reasons") :].split("\n\n")[1]
    cells = re.findall(r"^\| ((?:`[a-z_]+`(?: / )?)+)", table, re.M)
    return {reason for cell in cells for reason in re.findall(r"`([a-z_]+)`", cell)}


REASONS = documented_reasons()


class FakeRegistry(DeviceRegistry):
    """The registry's contract without PostgreSQL; like the database, it cannot look up a
    text holding NUL (psycopg raises, which the registry reports as unavailable)."""

    def __init__(self) -> None:
        super().__init__("", refresh_seconds=1e9, miss_ttl=1e9)

    def get(self, device_id: str) -> DeviceParams | None:
        if "\x00" in device_id:
            raise RegistryUnavailable("registry_lookup: text fields cannot contain NUL")
        return DEVICES.get(device_id)


def run(value: bytes) -> Output:
    msg = Message(topic="raw", partition=0, offset=7, key=b"k", value=value, headers=[])
    return process(msg, FakeRegistry(), MAX_FUTURE, MAX_AGE, now=NOW)


def assert_storable_or_dead_lettered(value: bytes) -> Output:
    """The processor's contract for one record, whatever it holds."""
    out = run(value)
    if out.dead_letter:
        assert out.reason in REASONS, f"undocumented dead-letter reason {out.reason}"
        assert header_value(out.headers, DLQ_REASON_HEADER) == out.reason
        assert header_value(out.headers, DLQ_DETAIL_HEADER)
        assert out.value == value  # kept as it came, for replay
    else:
        # What the sink does with it: parse, then turn it into rows, without raising.
        record = DecodedRecord.model_validate_json(out.value)
        rows = record_rows(record)
        assert len(rows) == len(record.measurements) > 0
        for row in rows:
            assert not any("\x00" in v for v in row if isinstance(v, str))
    return out


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**1024)  # beyond float range
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["00EB", "FF9C", "0x1f", "-FFF", " 1f ", "1_2f", "١٢٣٤", "a\x00b"])
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3)
)
metric_names = (
    st.sampled_from(["temperature", "rpm", "door-sensor-1", "qr-reader-1", "humidity"])
    | st.text(max_size=8)
    | st.text(min_size=129, max_size=200)
)
payloads = st.dictionaries(metric_names, json_scalars, max_size=4) | json_values
topics = st.sampled_from(
    [
        sensor_topic(SENSOR.device_id),
        truck_topic(TRUCK.device_id),
        f"http/{SENSOR.device_id}",
        f2_topic(F2.device_id, "access-control-mode", "door-sensors"),
        f2_topic(F2.device_id, "access-control-mode", "qr-readers"),
        f2_topic(F2.device_id, "monitoring-mode", "rs485-sensors"),
        f2_topic(F2.device_id, "monitoring-mode", "thermostats"),
        f"http/{F2.device_id}",
        sensor_topic(SENSOR.device_id) + "\n",
    ]
) | st.text(max_size=40)
device_ids = st.sampled_from(sorted(DEVICES)) | st.text(max_size=20) | st.just("sensor\x00")
timestamps = (
    st.floats(min_value=NOW - 2 * MAX_AGE, max_value=NOW + 2 * MAX_FUTURE)
    | st.floats()
    | st.integers()
)


@st.composite
def raw_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed ``RawEnvelope`` JSON objects with hostile parts."""
    envelope: dict[str, Any] = {
        "message_id": draw(st.text(max_size=10) | st.text(min_size=257, max_size=300)),
        "device_id": draw(device_ids),
        "original_topic": draw(topics),
        "payload": draw(payloads),
        "payload_encoding": draw(st.sampled_from(["json", "text", "base64", "xml"])),
        "timestamp": draw(timestamps),
        "received_at": NOW,
        "source": draw(st.sampled_from(["mqtt", "http"])),
        "fleet": draw(st.none() | st.sampled_from(["p", "other-fleet"])),
    }
    for key in draw(st.lists(st.sampled_from(sorted(envelope)), max_size=2)):
        envelope[key] = draw(json_values)  # wrong type (or missing: None is not a string)
    return envelope


@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe{")
@example(b'{"message_id": "m"')
def test_any_bytes_become_one_output_never_an_exception(value: bytes) -> None:
    out = assert_storable_or_dead_lettered(value)
    assert out.reason == "invalid_envelope"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw_envelopes())
def test_any_envelope_is_decoded_into_storable_rows_or_dead_lettered(
    envelope: dict[str, Any],
) -> None:
    # json.dumps writes NaN/Infinity literals, which a hostile producer could send too.
    assert_storable_or_dead_lettered(json.dumps(envelope).encode())


@given(
    topic=topics,
    payload=st.binary(max_size=200) | payloads.map(lambda p: json.dumps(p).encode()),
    message_id=st.none() | st.text(max_size=300),
)
def test_any_mqtt_message_through_bridge_and_processor(
    topic: str, payload: bytes, message_id: str | None
) -> None:
    """Bridge → processor → sink rows: whatever a device publishes is stored or dead-lettered."""
    properties = [] if message_id is None else [("message-id", message_id)]
    envelope = mqtt_envelope(topic, payload, properties, received_at=NOW)
    assert_storable_or_dead_lettered(envelope.model_dump_json().encode())


def envelope_json(device: DeviceParams, topic: str, payload: Any, timestamp: float = NOW) -> bytes:
    return json.dumps(
        {
            "message_id": f"{device.device_id}:1:0",
            "device_id": device.device_id,
            "original_topic": topic,
            "payload": payload,
            "timestamp": timestamp,
            "received_at": NOW,
            "source": "mqtt",
        }
    ).encode()


readings = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True).filter(lambda k: k != "timestamp"),
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    min_size=1,
    max_size=8,
)


@given(readings, st.floats(min_value=NOW - MAX_AGE, max_value=NOW + MAX_FUTURE))
def test_numeric_readings_round_trip(payload: dict[str, float], timestamp: float) -> None:
    for device, topic in (
        (SENSOR, sensor_topic(SENSOR.device_id)),
        (TRUCK, f"http/{TRUCK.device_id}"),
    ):
        out = assert_storable_or_dead_lettered(envelope_json(device, topic, payload, timestamp))
        assert not out.dead_letter, out.reason
        record = DecodedRecord.model_validate_json(out.value)
        assert {m.metric: m.value for m in record.measurements} == {
            k: float(v) for k, v in payload.items()
        }
        assert record.timestamp == timestamp
        assert record.device_id == device.device_id


@given(st.dictionaries(st.from_regex(r"door-sensor-[0-9]{1,2}", fullmatch=True), st.booleans()))
def test_f2_states_round_trip(payload: dict[str, bool]) -> None:
    topic = f2_topic(F2.device_id, "access-control-mode", "door-sensors")
    out = assert_storable_or_dead_lettered(envelope_json(F2, topic, payload))
    if not payload:
        assert out.reason == "no_measurements"
        return
    record = DecodedRecord.model_validate_json(out.value)
    assert {m.metric: m.value == 1.0 for m in record.measurements} == payload


@given(st.text(max_size=6))
def test_rs485_accepts_exactly_four_ascii_hex_digits(value: str) -> None:
    if re.fullmatch(r"[0-9A-Fa-f]{4}", value):
        assert decode_rs485("t", value, None).value == int(value, 16)
    else:
        with pytest.raises(DecodeError) as err:
            decode_rs485("t", value, None)
        assert err.value.reason == "invalid_value"


@given(st.floats(allow_nan=False), st.floats(min_value=0, max_value=1e9))
def test_timestamp_window_is_exact(offset: float, window: float) -> None:
    timestamp = NOW + offset
    if not math.isfinite(timestamp):
        return
    if NOW - window <= timestamp <= NOW + window:
        check_timestamp(timestamp, NOW, max_future=window, max_age=window)
        return
    expected = "timestamp_in_future" if timestamp > NOW else "timestamp_too_old"
    with pytest.raises(DecodeError) as err:
        check_timestamp(timestamp, NOW, max_future=window, max_age=window)
    assert err.value.reason == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"temperature": 10**400}, "invalid_value"),  # crashed the processor (OverflowError)
        ({"temp\x00": 1.0}, "invalid_metric"),  # stalled the sink: PostgreSQL refuses NUL
        ({"t" * 3000: 1.0}, "invalid_metric"),  # stalled the sink: index row too large
        ({"": 1.0}, "invalid_metric"),
        ({"line\nbreak": 1.0}, "invalid_metric"),
    ],
)
def test_poison_readings_are_dead_lettered(payload: dict[str, Any], reason: str) -> None:
    out = assert_storable_or_dead_lettered(
        envelope_json(SENSOR, sensor_topic(SENSOR.device_id), payload)
    )
    assert out.reason == reason


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("device_id", "sensor\x00", "invalid_device_id"),  # looked like a registry outage
        ("device_id", "sensors/x", "invalid_device_id"),
        ("message_id", "m\x00", "invalid_message_id"),
        ("message_id", "m" * 257, "invalid_message_id"),
        ("message_id", "", "invalid_message_id"),
        ("original_topic", sensor_topic(SENSOR.device_id) + "\n", "unknown_topic"),
        ("timestamp", math.nan, "invalid_envelope"),
        ("timestamp", math.inf, "invalid_envelope"),
        ("timestamp", NOW + MAX_FUTURE + 1, "timestamp_in_future"),
        ("timestamp", 1e300, "timestamp_in_future"),
        ("timestamp", NOW - MAX_AGE - 1, "timestamp_too_old"),
        ("device_id", "sensor-never-registered", "unknown_device"),
    ],
)
def test_hostile_envelope_fields_are_dead_lettered(field: str, value: Any, reason: str) -> None:
    envelope = json.loads(envelope_json(SENSOR, sensor_topic(SENSOR.device_id), {"t": 1.0}))
    envelope[field] = value
    out = assert_storable_or_dead_lettered(json.dumps(envelope).encode())
    assert out.reason == reason


@pytest.mark.parametrize(
    ("value", "shown"), [("0x1f", "not 4 hex digits"), ("-FFF", "not 4 hex digits")]
)
def test_rs485_no_longer_takes_what_int_takes(value: str, shown: str) -> None:
    topic = f2_topic(F2.device_id, "monitoring-mode", "rs485-sensors")
    out = assert_storable_or_dead_lettered(envelope_json(F2, topic, {"temperature": value}))
    assert out.reason == "invalid_value"
    assert shown in (header_value(out.headers, DLQ_DETAIL_HEADER) or "")
