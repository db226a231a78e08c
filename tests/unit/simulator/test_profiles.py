from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from devicefleet_common.devices import F2_RS485_DEFAULTS, device_id
from devicefleet_common.topics import parse_topic
from devicefleet_simulator.profiles import F2Controller, GenericSensor, TruckModel, make_model
from devicefleet_simulator.profiles.f2 import BOOLEAN_COMPONENTS, COMPONENTS, MODES
from devicefleet_simulator.profiles.rs485 import (
    decode_register,
    decode_sensor,
    encode_register,
    encode_sensor,
)
from devicefleet_simulator.profiles.truck import DEGRADING_ONSET_TICKS, PROFILES, degrading_profile
from devicefleet_simulator.settings import Settings

NOW = datetime(2025, 5, 26, 18, 34, 4, 928000, tzinfo=UTC)
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX4 = re.compile(r"^[0-9A-F]{4}$")

F2_KEYS = {
    "door-sensors": {"door-sensor-1", "door-sensor-2"},
    "electric-strikes": {"electric-strike-1", "electric-strike-2"},
    "exit-buttons": {"exit-button-1"},
    "motion-sensors": {"motion-sensor-1", "motion-sensor-2"},
    "sirens": {"siren-1"},
    "qr-readers": {"qr-reader-1"},
    "nfc-readers": {"nfc-reader-1"},
    "rs485-sensors": {"temperature", "humidity", "pressure"},
}


def test_generic_payload_contract() -> None:
    dev = device_id("generic", "demo", 3)
    reading = GenericSensor(dev, random.Random(1)).tick(NOW)
    assert reading.topic == f"sensors/{dev}"
    assert set(reading.payload) == {"timestamp", "temperature", "humidity", "battery_v"}
    assert reading.payload["timestamp"] == "2025-05-26T18:34:04.928Z"
    assert all(isinstance(reading.payload[k], float) for k in ("temperature", "humidity"))
    assert 3.3 <= reading.payload["battery_v"] <= 4.2


def test_f2_payload_contract_covers_every_component_and_mode() -> None:
    dev = device_id("f2", "demo", 0)
    model = F2Controller(dev, random.Random(2))
    seen_components, seen_modes = set(), set()
    for _ in range(400):
        reading = model.tick(NOW)
        info = parse_topic(reading.topic)
        assert info is not None
        assert info.device_id == dev
        assert info.profile == "f2"
        assert info.connector_mode in MODES
        assert info.component_type in COMPONENTS
        component = info.component_type
        seen_components.add(component)
        seen_modes.add(info.connector_mode)
        payload = dict(reading.payload)
        assert RFC3339_Z.match(payload.pop("timestamp"))
        assert set(payload) == F2_KEYS[component]
        if component in BOOLEAN_COMPONENTS:
            assert all(isinstance(v, bool) for v in payload.values())
        elif component == "qr-readers":
            assert isinstance(payload["qr-reader-1"], str)
            assert payload["qr-reader-1"]
        elif component == "nfc-readers":
            assert re.fullmatch(r"04[0-9A-F]{12}", payload["nfc-reader-1"])
        else:
            assert all(HEX4.match(v) for v in payload.values())
            assert -40 <= decode_sensor("temperature", payload["temperature"]) <= 80
            assert 0 <= decode_sensor("humidity", payload["humidity"]) <= 100
            assert 900 <= decode_sensor("pressure", payload["pressure"]) <= 1100
    assert seen_components == set(COMPONENTS)
    assert seen_modes == set(MODES)


def test_truck_payload_contract_and_hidden_state() -> None:
    dev = device_id("truck", "demo", 1)
    model = TruckModel(dev, random.Random(3))
    fields = {
        "engine_temp_c",
        "oil_pressure_kpa",
        "vibration_mm_s",
        "rpm",
        "fuel_level_pct",
        "speed_kmh",
        "payload_t",
    }
    states = set()
    temps: dict[str, list[float]] = {}
    for _ in range(5000):
        reading = model.tick(NOW)
        assert reading.topic == f"trucks/{dev}/telemetry"
        assert set(reading.payload) == {"timestamp", *fields}
        assert "state" not in reading.payload
        states.add(model.state)
        temps.setdefault(model.state, []).append(reading.payload["engine_temp_c"])
        assert 0 <= reading.payload["fuel_level_pct"] <= 100
    assert {"normal", "degrading", "critical", "maintenance"} <= states

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    # The distributions drift with the (hidden) state.
    assert mean(temps["normal"]) < mean(temps["degrading"]) < mean(temps["critical"])


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [("temperature", 23.5, "00EB"), ("humidity", 45.0, "01C2"), ("pressure", 1013.5, "2797")],
)
def test_rs485_examples_from_the_contract(name: str, value: float, text: str) -> None:
    assert encode_sensor(name, value) == text
    assert decode_sensor(name, text) == pytest.approx(value)


def test_rs485_negative_temperature_is_twos_complement() -> None:
    assert encode_sensor("temperature", -1.5) == "FFF1"
    assert decode_sensor("temperature", "FFF1") == pytest.approx(-1.5)


def test_rs485_round_trips_through_the_defaults() -> None:
    rng = random.Random(4)
    for name, params in F2_RS485_DEFAULTS.items():
        low = -3000.0 if params["signed"] else 0.0
        for _ in range(500):
            value = round(rng.uniform(low, 3000.0), 1)
            text = encode_sensor(name, value)
            assert HEX4.match(text)
            assert decode_sensor(name, text) == pytest.approx(value, abs=params["scale"] / 2)


def test_rs485_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        encode_register(70000.0, 1.0, 0.0, signed=False)
    with pytest.raises(ValueError, match="4 hex"):
        decode_register("ABC", 1.0, 0.0, signed=False)


def test_models_are_deterministic_per_seed() -> None:
    a = make_model("f2", "f2-000000000000", random.Random("7/x"))
    b = make_model("f2", "f2-000000000000", random.Random("7/x"))
    assert [a.tick(NOW) for _ in range(20)] == [b.tick(NOW) for _ in range(20)]


def test_pod_index_selects_a_stable_slice_of_the_fleet() -> None:

    first = Settings(pod_index=0, device_count=100, fleet_devices=250)
    last = Settings(pod_index=2, device_count=100, fleet_devices=250)
    assert (first.device_start_index, first.device_count) == (0, 100)
    assert (last.device_start_index, last.device_count) == (200, 50)
    with pytest.raises(ValueError, match="has no devices"):
        Settings(pod_index=3, device_count=100, fleet_devices=250)


def test_truck_degradation_sets_in_gradually() -> None:
    first, half = degrading_profile(1), degrading_profile(DEGRADING_ONSET_TICKS // 2)
    normal, degraded = PROFILES["normal"], PROFILES["degrading"]
    assert normal.vibration_mm_s.mean < first.vibration_mm_s.mean < half.vibration_mm_s.mean
    assert first.vibration_mm_s.mean - normal.vibration_mm_s.mean < normal.vibration_mm_s.sd
    assert degrading_profile(DEGRADING_ONSET_TICKS) == degraded
    assert degrading_profile(10 * DEGRADING_ONSET_TICKS) == degraded
