from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devicefleet_common.devices import default_parameters, device_id
from devicefleet_common.schemas import RawEnvelope
from devicefleet_common.topics import f2_topic, sensor_topic, truck_topic
from devicefleet_processor.decoders import (
    MAX_READINGS,
    DecodeError,
    DeviceParams,
    check_timestamp,
    decode,
    decode_rs485,
)

F2 = DeviceParams(device_id("f2", "t", 0), "f2", "t", "site-a", "F2", default_parameters("f2"))
TRUCK = DeviceParams("truck-t-00000", "truck", "t")
SENSOR = DeviceParams("sensor-t-00000", "generic", "t", params={"units": {"temperature": "K"}})


def envelope(dev: str, topic: str, payload: Any, encoding: str = "json") -> RawEnvelope:
    return RawEnvelope(
        message_id=f"{dev}:1:0",
        device_id=dev,
        original_topic=topic,
        payload=payload,
        payload_encoding=encoding,  # type: ignore[arg-type]
        timestamp=1_700_000_000.0,
        received_at=1_700_000_000.5,
        source="mqtt",
    )


def test_f2_booleans_become_state_measurements() -> None:
    topic = f2_topic(F2.device_id, "access-control-mode", "door-sensors")
    record = decode(
        envelope(
            F2.device_id, topic, {"timestamp": "x", "door-sensor-1": True, "door-sensor-2": False}
        ),
        F2,
    )
    assert [(m.metric, m.value, m.unit) for m in record.measurements] == [
        ("door-sensor-1", 1.0, "state"),
        ("door-sensor-2", 0.0, "state"),
    ]
    assert (record.connector_mode, record.component_type) == ("access-control-mode", "door-sensors")
    assert record.attributes == {"fleet": "t", "site": "site-a", "model": "F2"}


@pytest.mark.parametrize(
    "component", ["electric-strikes", "exit-buttons", "motion-sensors", "sirens"]
)
def test_every_f2_boolean_component_rejects_non_booleans(component: str) -> None:
    topic = f2_topic(F2.device_id, "access-control-mode", component)
    assert decode(envelope(F2.device_id, topic, {"x-1": True}), F2).measurements[0].value == 1.0
    with pytest.raises(DecodeError) as err:
        decode(envelope(F2.device_id, topic, {"x-1": "yes"}), F2)
    assert err.value.reason == "invalid_value"


@pytest.mark.parametrize("component", ["qr-readers", "nfc-readers"])
def test_f2_readers_keep_raw_strings(component: str) -> None:
    topic = f2_topic(F2.device_id, "access-control-mode", component)
    record = decode(envelope(F2.device_id, topic, {"reader-1": "04A224B2C35E80"}), F2)
    assert record.measurements[0].value_text == "04A224B2C35E80"
    assert record.measurements[0].value is None


def test_rs485_hex_scaled_by_registry_calibration() -> None:
    topic = f2_topic(F2.device_id, "monitoring-mode", "rs485-sensors")
    record = decode(
        envelope(
            F2.device_id, topic, {"temperature": "FF9C", "humidity": "01C2", "pressure": "2797"}
        ),
        F2,
    )
    values = {m.metric: (m.value, m.unit) for m in record.measurements}
    assert values == {
        "temperature": (-10.0, "C"),
        "humidity": (45.0, "%RH"),
        "pressure": (1013.5, "hPa"),
    }


def test_rs485_registry_overrides_defaults() -> None:
    device = DeviceParams(
        F2.device_id,
        "f2",
        params={"rs485": {"flow": {"scale": 0.5, "offset": 1.0, "unit": "l/min"}}},
    )
    topic = f2_topic(F2.device_id, "monitoring-mode", "rs485-sensors")
    [m] = decode(envelope(F2.device_id, topic, {"flow": "000A"}), device).measurements
    assert (m.value, m.unit) == (6.0, "l/min")


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_rs485_signed_registers_round_trip(raw: int) -> None:
    m = decode_rs485("t", f"{raw:04X}", {"scale": 1, "offset": 0, "signed": True})
    assert m.value == (raw - 0x10000 if raw >= 0x8000 else raw)


@pytest.mark.parametrize("value", ["ZZZZ", "123", "12345", 17, None])
def test_rs485_invalid_registers(value: Any) -> None:
    with pytest.raises(DecodeError) as err:
        decode_rs485("temperature", value, None)
    assert err.value.reason == "invalid_value"


def test_truck_numeric_readings_with_default_units() -> None:
    record = decode(
        envelope(
            TRUCK.device_id,
            truck_topic(TRUCK.device_id),
            {"timestamp": "x", "engine_temp_c": 90, "rpm": 1500.5, "_truth": "normal"},
        ),
        TRUCK,
    )
    assert [(m.metric, m.value, m.unit) for m in record.measurements] == [
        ("engine_temp_c", 90.0, "C"),
        ("rpm", 1500.5, "rpm"),
    ]


def test_generic_units_from_registry() -> None:
    record = decode(
        envelope(SENSOR.device_id, sensor_topic(SENSOR.device_id), {"temperature": 290.0}), SENSOR
    )
    assert record.measurements[0].unit == "K"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"temperature": "hot"}, "invalid_value"),
        ({"temperature": True}, "invalid_value"),
        ({"temperature": math.inf}, "invalid_value"),
        ({"timestamp": "x"}, "no_measurements"),
        ({}, "no_measurements"),
        ({f"m{i}": 1.0 for i in range(MAX_READINGS + 1)}, "too_many_measurements"),
    ],
)
def test_bad_numeric_payloads(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode(envelope(SENSOR.device_id, sensor_topic(SENSOR.device_id), payload), SENSOR)
    assert err.value.reason == reason


def test_envelope_level_errors() -> None:
    dev = SENSOR.device_id
    cases = [
        (envelope(dev, "weird/topic", {"a": 1}), "unknown_topic"),
        (envelope(dev, sensor_topic("other-device"), {"a": 1}), "device_mismatch"),
        (envelope(dev, truck_topic(dev), {"a": 1}), "profile_mismatch"),
        (envelope(dev, sensor_topic(dev), "not json", encoding="text"), "payload_not_json_object"),
        (envelope(dev, sensor_topic(dev), [1, 2]), "payload_not_json_object"),
    ]
    for env, reason in cases:
        with pytest.raises(DecodeError) as err:
            decode(env, SENSOR)
        assert err.value.reason == reason


def test_http_topic_uses_registry_profile_and_f2_needs_component() -> None:
    record = decode(envelope(TRUCK.device_id, f"http/{TRUCK.device_id}", {"rpm": 1}), TRUCK)
    assert record.profile == "truck"
    with pytest.raises(DecodeError) as err:
        decode(envelope(F2.device_id, f"http/{F2.device_id}", {"a": True}), F2)
    assert err.value.reason == "missing_component"


def test_timestamp_window() -> None:
    check_timestamp(1000.0, now=1000.0, max_future=10, max_age=10)
    with pytest.raises(DecodeError, match="timestamp_in_future"):
        check_timestamp(1011.0, now=1000.0, max_future=10, max_age=10)
    with pytest.raises(DecodeError, match="timestamp_too_old"):
        check_timestamp(989.0, now=1000.0, max_future=10, max_age=10)


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        max_size=6,
    )
)
def test_decoders_never_raise_anything_but_decode_error(payload: dict[str, Any]) -> None:
    for device, topic in (
        (SENSOR, sensor_topic(SENSOR.device_id)),
        (F2, f2_topic(F2.device_id, "m", "rs485-sensors")),
        (F2, f2_topic(F2.device_id, "m", "door-sensors")),
        (F2, f2_topic(F2.device_id, "m", "qr-readers")),
    ):
        with contextlib.suppress(DecodeError):
            decode(envelope(device.device_id, topic, payload), device)
