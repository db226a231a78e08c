from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from devicefleet_common.schemas import TelemetryIn
from devicefleet_simulator.faults import NO_FAULTS, FaultInjector, FaultRates, corrupt_payload

from .conftest import make_message

SEED_002 = FaultRates(
    drop_rate=0.15, jitter_rate=0.20, max_jitter=2.0, duplicate_rate=0.10, malformed_rate=0.05
)


def test_fault_rates_roughly_match_with_a_fixed_seed() -> None:
    injector = FaultInjector(SEED_002, random.Random(42))
    plans = [injector.plan() for _ in range(20_000)]
    sent = [p for p in plans if not p.drop]
    assert sum(p.drop for p in plans) / len(plans) == pytest.approx(0.15, abs=0.01)
    assert sum(p.jitter > 0 for p in sent) / len(sent) == pytest.approx(0.20, abs=0.015)
    assert sum(p.duplicate for p in sent) / len(sent) == pytest.approx(0.10, abs=0.01)
    assert sum(p.malformed is not None for p in sent) / len(sent) == pytest.approx(0.05, abs=0.01)
    assert max(p.jitter for p in sent) <= 2.0


def test_fault_plans_are_reproducible() -> None:
    a = FaultInjector(SEED_002, random.Random(1))
    b = FaultInjector(SEED_002, random.Random(1))
    assert [a.plan() for _ in range(100)] == [b.plan() for _ in range(100)]


def test_no_faults_at_zero_rates() -> None:
    injector = FaultInjector(FaultRates(), random.Random(0))
    assert all(injector.plan() == NO_FAULTS for _ in range(100))


@pytest.mark.parametrize(
    ("payload", "bad"),
    [
        ({"timestamp": "t", "temperature": "00EB"}, "ZZZZ"),
        ({"timestamp": "t", "door-sensor-1": True}, "maybe"),
        ({"timestamp": "t", "engine_temp_c": 90.1}, "n/a"),
        ({"timestamp": "t", "qr-reader-1": "ACCESS:X"}, 12345),
    ],
)
def test_corrupt_payload_keeps_keys_and_breaks_one_type(payload: dict, bad: object) -> None:
    corrupted = corrupt_payload(payload, random.Random(0))
    assert set(corrupted) == set(payload)
    assert corrupted["timestamp"] == "t"
    assert bad in corrupted.values()


def test_message_ids_are_stable() -> None:
    m = make_message(12, device_id="f2-0123456789ab")
    assert m.message_id == "f2-0123456789ab:1700000000:12"
    assert make_message(12, device_id="f2-0123456789ab").message_id == m.message_id


def test_http_body_is_a_valid_telemetry_in() -> None:
    body = TelemetryIn.model_validate_json(make_message(3).http_body())
    assert body.message_id == make_message(3).message_id
    assert body.topic == "sensors/sensor-t-00000"
    assert body.payload["temperature"] == 21.5


@pytest.mark.parametrize("kind", ["invalid-json", "wrong-type"])
def test_malformed_http_body_fails_validation(kind: str) -> None:
    with pytest.raises(ValidationError):
        TelemetryIn.model_validate_json(make_message(3, malformed=kind).http_body())


def test_malformed_mqtt_bodies() -> None:
    assert json.loads(make_message(1).mqtt_body())["temperature"] == 21.5
    with pytest.raises(json.JSONDecodeError):
        json.loads(make_message(1, malformed="invalid-json").mqtt_body())
