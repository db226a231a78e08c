"""The shared feature definitions, and the promise behind them: the edge gateway and the
processor compute identical vectors for the same readings (frozen shared vectors)."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devicefleet_common.features import (
    FEATURE_NAMES,
    FEATURE_SET,
    FEATURES_KEY,
    TRUTH_KEY,
    WINDOW,
    FeatureError,
    FeatureWindow,
    Sample,
    compute_features,
    edge_block,
    parse_edge_block,
    sample_of,
)
from devicefleet_common.schemas import RawEnvelope, TelemetryIn
from devicefleet_ingest.envelope import http_envelope
from devicefleet_processor.decoders import DeviceParams, decode
from devicefleet_processor.health import HealthScorer
from devicefleet_processor.health_model import HealthModel
from devicefleet_simulator.profiles.base import Reading
from devicefleet_simulator.simulator import Simulator
from tests.unit.simulator.conftest import FakeTransport, fast_settings

VECTORS = json.loads((Path(__file__).parent / "vectors" / f"{FEATURE_SET}.json").read_text())


def _sample(t: float, **values: float) -> Sample:
    base = dict.fromkeys(
        ("engine_temp_c", "oil_pressure_kpa", "vibration_mm_s", "rpm", "speed_kmh"), 0.0
    )
    return Sample(t, {**base, **values})


def test_statistics_by_hand() -> None:
    samples = [_sample(0.0, engine_temp_c=100), _sample(30.0, engine_temp_c=110),
               _sample(60.0, engine_temp_c=120)]  # fmt: skip
    f = compute_features(samples)
    assert f["engine_temp_c.mean"] == 110.0
    assert f["engine_temp_c.std"] == pytest.approx(math.sqrt(200 / 3))
    assert (f["engine_temp_c.min"], f["engine_temp_c.max"]) == (100.0, 120.0)
    assert f["engine_temp_c.slope_per_min"] == 20.0  # +20 °C over one minute
    assert f["overheat_count"] == 2.0  # 110 and 120 are above 105
    assert f["low_oil_count"] == 3.0  # 0 kPa is below 260
    assert f["high_vibration_count"] == 0.0
    assert list(f) == list(FEATURE_NAMES)


def test_one_reading_has_no_slope() -> None:
    assert compute_features([_sample(5.0, rpm=1500)])["rpm.slope_per_min"] == 0.0
    with pytest.raises(ValueError, match="at least one"):
        compute_features([])


def test_window_is_full_after_window_readings_and_ignores_redeliveries() -> None:
    window = FeatureWindow()
    results = [window.add(f"m{i}", _sample(float(i))) for i in range(WINDOW)]
    assert results[:-1] == [None] * (WINDOW - 1)
    assert results[-1] is not None
    assert window.add(f"m{WINDOW - 1}", _sample(99.0)) is None  # same message again
    assert window.add("m-next", _sample(100.0)) is not None


@pytest.mark.parametrize(
    ("readings", "usable"),
    [
        ({"engine_temp_c": 1, "oil_pressure_kpa": 2, "vibration_mm_s": 3, "rpm": 4,
          "speed_kmh": 5}, True),
        ({"engine_temp_c": 1, "oil_pressure_kpa": 2, "vibration_mm_s": 3, "rpm": 4}, False),
        ({"engine_temp_c": True, "oil_pressure_kpa": 2, "vibration_mm_s": 3, "rpm": 4,
          "speed_kmh": 5}, False),
        ({"engine_temp_c": math.nan, "oil_pressure_kpa": 2, "vibration_mm_s": 3, "rpm": 4,
          "speed_kmh": 5}, False),
        ({"engine_temp_c": "90", "oil_pressure_kpa": 2, "vibration_mm_s": 3, "rpm": 4,
          "speed_kmh": 5}, False),
    ],
)  # fmt: skip
def test_sample_needs_every_health_metric_as_a_finite_number(
    readings: dict[str, Any], usable: bool
) -> None:
    assert (sample_of(0.0, readings) is not None) is usable


def _valid_block() -> dict[str, Any]:
    return edge_block(dict.fromkeys(FEATURE_NAMES, 1.0))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(set="truck-v0"), "feature_set_mismatch"),
        (lambda b: b.pop("values"), "invalid_features"),
        (lambda b: b["values"].pop("rpm.mean"), "invalid_features"),
        (lambda b: b["values"].update({"rpm.mean": "fast"}), "invalid_features"),
        (lambda b: b["values"].update({"rpm.mean": math.inf}), "invalid_features"),
        (lambda b: b["values"].update({"rpm.mean": True}), "invalid_features"),
    ],
)
def test_edge_block_is_validated(mutate: Any, reason: str) -> None:
    block = _valid_block()
    mutate(block)
    with pytest.raises(FeatureError) as info:
        parse_edge_block(block)
    assert info.value.reason == reason
    with pytest.raises(FeatureError):
        parse_edge_block(["not", "an", "object"])
    assert parse_edge_block(_valid_block()) == dict.fromkeys(FEATURE_NAMES, 1.0)


# --- shared vectors -----------------------------------------------------------------------


class ScriptedTruck:
    """Plays back the vector readings as a device model would produce them."""

    def __init__(self, device_id: str, topic: str, readings: list[dict[str, Any]]) -> None:
        self.device_id = device_id
        self._topic = topic
        self._readings = iter(readings)

    def tick(self, now: datetime) -> Reading:
        return Reading(self._topic, copy.deepcopy(next(self._readings)))


def _edge_messages(device: dict[str, Any]) -> list[Any]:
    """The readings through a simulator in edge mode: what it sends upstream."""
    sim = Simulator(
        fast_settings(profile="truck", device_count=1, edge=True, boot_epoch=1), FakeTransport()
    )
    (simulated,) = sim.devices
    simulated.model = ScriptedTruck(device["device_id"], device["topic"], device["readings"])
    simulated.device_id = device["device_id"]

    async def run() -> list[Any]:
        out = [sim.generate(simulated, datetime.now(UTC)) for _ in device["readings"]]
        await sim.delivery.wait_idle()
        return out

    return asyncio.run(run())


def _as_processor_sees_it(message: Any, drop_features: bool) -> RawEnvelope:
    """HTTP body → ingest's envelope → Kafka JSON → the processor's RawEnvelope."""
    body = TelemetryIn.model_validate_json(message.http_body())
    if drop_features:
        body.payload.pop(FEATURES_KEY, None)
    envelope = http_envelope(body, received_at=0.0)
    return RawEnvelope.model_validate_json(envelope.model_dump_json())


def _scorer() -> HealthScorer:
    n = len(FEATURE_NAMES)
    model = HealthModel.from_dict({
        "version": "test", "feature_set": FEATURE_SET, "features": list(FEATURE_NAMES),
        "classes": ["normal", "critical"], "center": [0.0] * n, "scale": [1.0] * n,
        "coef": [[0.0] * n, [0.0] * n], "intercept": [0.0, 0.0],
    })  # fmt: skip
    return HealthScorer(model)


@pytest.mark.parametrize("device", VECTORS["devices"], ids=lambda d: d["device_id"])
def test_edge_and_processor_compute_the_shared_vectors(device: dict[str, Any]) -> None:
    expected = device["features"]
    params = DeviceParams(device["device_id"], "truck", fleet="vectors")
    messages = _edge_messages(device)

    edge = [m.payload.get(FEATURES_KEY) for m in messages]
    assert edge == [None if f is None else edge_block(f) for f in expected]
    assert all(TRUTH_KEY not in m.payload for m in messages)  # only in test mode

    processor, from_edge = _scorer(), _scorer()
    for message, want in zip(messages, expected, strict=True):
        computed = processor.score(
            envelope := _as_processor_sees_it(message, drop_features=True),
            decode(envelope, params),
        )
        shipped = from_edge.score(
            envelope := _as_processor_sees_it(message, drop_features=False),
            decode(envelope, params),
        )
        if want is None:
            assert computed is None
            assert shipped is None
            continue
        assert computed is not None
        assert shipped is not None
        assert computed.features_source == "processor"
        assert shipped.features_source == "edge"
        # Exactly equal, not approximately: same definition, same numbers.
        assert computed.features == want
        assert shipped.features == want


def test_ground_truth_rides_in_its_own_field_in_test_mode() -> None:
    sim = Simulator(
        fast_settings(profile="truck", device_count=2, edge=True, ground_truth=True),
        FakeTransport(),
    )

    async def run() -> list[Any]:
        out = [sim.generate(d, datetime.now(UTC)) for d in sim.devices for _ in range(WINDOW)]
        await sim.delivery.wait_idle()
        return out

    messages = asyncio.run(run())
    assert all(m.payload[TRUTH_KEY] in ("normal", "degrading", "critical", "maintenance")
               for m in messages)  # fmt: skip
    assert sum(FEATURES_KEY in m.payload for m in messages) == 2  # one full window each
    assert all(TRUTH_KEY not in json.dumps(m.payload.get(FEATURES_KEY)) for m in messages)


@pytest.mark.parametrize("profile", ["f2", "generic"])
def test_edge_and_ground_truth_are_for_trucks(profile: str) -> None:
    with pytest.raises(ValueError, match="needs profile truck"):
        fast_settings(profile=profile, edge=True)
    with pytest.raises(ValueError, match="needs profile truck"):
        fast_settings(profile=profile, ground_truth=True)
