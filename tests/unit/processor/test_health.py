"""Health scoring in the processor: where features come from, what is counted, what the
gauges show. The model here is a hand-made one; the shipped artifact has its own tests."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from devicefleet_common.features import (
    FEATURE_NAMES,
    FEATURE_SET,
    FEATURES_KEY,
    TRUTH_KEY,
    WINDOW,
    edge_block,
)
from devicefleet_common.schemas import DecodedRecord, Measurement, RawEnvelope
from devicefleet_processor.health import HealthScorer, score_safely
from devicefleet_processor.health_model import HealthModel, ModelError

N = len(FEATURE_NAMES)
HOT = FEATURE_NAMES.index("engine_temp_c.mean")


def hot_model(**overrides: Any) -> dict[str, Any]:
    """'critical' exactly when the mean engine temperature is above 100 °C."""
    coef = [[0.0] * N, [0.0] * N]
    coef[1][HOT] = 1.0
    return {
        "version": "hot-v1", "feature_set": FEATURE_SET, "features": list(FEATURE_NAMES),
        "classes": ["normal", "critical"], "center": [100.0] * N, "scale": [1.0] * N,
        "coef": coef, "intercept": [0.0, 0.0], **overrides,
    }  # fmt: skip


READING = {"engine_temp_c": 90.0, "oil_pressure_kpa": 350.0, "vibration_mm_s": 3.0,
           "rpm": 1600.0, "speed_kmh": 30.0}  # fmt: skip


def reading(device: str, seq: int, payload_extra: dict[str, Any] | None = None,
            fleet: str = "f", **values: float) -> tuple[RawEnvelope, DecodedRecord]:  # fmt: skip
    values = {**READING, **values}
    payload = {"timestamp": "2026-01-01T00:00:00Z", **values, **(payload_extra or {})}
    mid = f"{device}:1:{seq}"
    envelope = RawEnvelope(message_id=mid, device_id=device, original_topic=f"trucks/{device}/"
                           "telemetry", payload=payload, timestamp=1000.0 + seq,
                           received_at=0.0, source="http")  # fmt: skip
    record = DecodedRecord(
        message_id=mid, device_id=device, timestamp=1000.0 + seq, profile="truck",
        original_topic=envelope.original_topic, attributes={"fleet": fleet},
        measurements=[Measurement(metric=k, value=v) for k, v in values.items()],
    )  # fmt: skip
    return envelope, record


def sample_value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_model_predicts_with_probabilities() -> None:
    model = HealthModel.from_dict(hot_model())
    features = dict.fromkeys(FEATURE_NAMES, 0.0)
    state, probabilities = model.predict({**features, "engine_temp_c.mean": 110.0})
    assert state == "critical"
    assert probabilities["critical"] > 0.99
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert model.predict({**features, "engine_temp_c.mean": 90.0})[0] == "normal"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"feature_set": "truck-v0"}, "feature set"),
        ({"features": list(reversed(FEATURE_NAMES))}, "feature set"),
        ({"classes": ["normal", "broken"]}, "unknown classes"),
        ({"scale": [0.0] * N}, "center/scale"),
        ({"intercept": [0.0]}, "one coefficient row per class"),
        ({"coef": [[0.0] * N, [0.0]]}, "coefficient rows"),
    ],
)
def test_a_mismatched_artifact_is_refused_at_load(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        HealthModel.from_dict(hot_model(**overrides))
    with pytest.raises(ModelError, match="not a health model"):
        HealthModel.from_dict({"version": "x"})


def test_processor_computes_features_once_the_window_is_full() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model()))
    before = sample_value(
        "ml_predictions_total",
        {"model_version": "hot-v1", "state": "critical", "source": "processor"},
    )
    verdicts = [scorer.score(*reading("t-win", i, engine_temp_c=120.0)) for i in range(WINDOW)]
    assert verdicts[:-1] == [None] * (WINDOW - 1)
    last = verdicts[-1]
    assert last is not None
    assert (last.state, last.features_source, last.true_state) == ("critical", "processor", None)
    after = sample_value(
        "ml_predictions_total",
        {"model_version": "hot-v1", "state": "critical", "source": "processor"},
    )
    assert (after or 0) - (before or 0) == 1


def test_edge_features_are_used_as_sent() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model()))
    features = {**dict.fromkeys(FEATURE_NAMES, 0.0), "engine_temp_c.mean": 130.0}
    verdict = scorer.score(*reading("t-edge", 0, {FEATURES_KEY: edge_block(features)}))
    assert verdict is not None
    assert (verdict.state, verdict.features_source) == ("critical", "edge")
    assert verdict.features == features


def test_bad_edge_features_are_counted_and_replaced_by_our_own() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model()))
    labels = {"reason": "feature_set_mismatch"}
    before = sample_value("ml_edge_features_rejected_total", labels) or 0
    bad = {FEATURES_KEY: {"set": "truck-v0", "values": {}}}
    verdicts = [scorer.score(*reading("t-bad", i, bad)) for i in range(WINDOW)]
    assert sample_value("ml_edge_features_rejected_total", labels) == before + WINDOW
    assert verdicts[-1] is not None
    assert verdicts[-1].features_source == "processor"


def test_ground_truth_feeds_the_accuracy_gauge_but_not_the_model() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model(version="acc-v1")))
    features = dict.fromkeys(FEATURE_NAMES, 0.0)  # mean temp 0 → normal
    for i, truth in enumerate(["normal", "normal", "critical", "normal"]):
        block = {FEATURES_KEY: edge_block(features), TRUTH_KEY: truth}
        verdict = scorer.score(*reading("t-acc", i, block))
        assert verdict is not None
        assert verdict.true_state == truth
        assert verdict.state == "normal"  # the truth never changes the verdict
    assert sample_value("ml_prediction_accuracy", {"model_version": "acc-v1"}) == 0.75


def test_other_profiles_are_not_scored() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model()))
    envelope, record = reading("s-0", 0)
    record.profile = "generic"
    assert scorer.score(envelope, record) is None


def test_devices_gauge_counts_fresh_verdicts_per_fleet_and_forgets_stale_ones() -> None:
    clock = Clock()
    scorer = HealthScorer(HealthModel.from_dict(hot_model()), stale_after=60, clock=clock)
    hot = {**dict.fromkeys(FEATURE_NAMES, 0.0), "engine_temp_c.mean": 130.0}
    cold = dict.fromkeys(FEATURE_NAMES, 0.0)
    scorer.score(*reading("g-a", 0, {FEATURES_KEY: edge_block(hot)}, fleet="gauge"))
    scorer.score(*reading("g-b", 0, {FEATURES_KEY: edge_block(hot)}, fleet="gauge"))
    scorer.score(*reading("g-c", 0, {FEATURES_KEY: edge_block(cold)}, fleet="gauge"))
    scorer.refresh_gauges(force=True)
    assert sample_value("ml_devices_predicted", {"fleet": "gauge", "state": "critical"}) == 2
    assert sample_value("ml_devices_predicted", {"fleet": "gauge", "state": "normal"}) == 1

    clock.now = 30.0
    scorer.score(*reading("g-a", 1, {FEATURES_KEY: edge_block(cold)}, fleet="gauge"))
    clock.now = 70.0  # g-b and g-c are stale now
    scorer.refresh_gauges(force=True)
    assert sample_value("ml_devices_predicted", {"fleet": "gauge", "state": "normal"}) == 1
    assert sample_value("ml_devices_predicted", {"fleet": "gauge", "state": "critical"}) is None


def test_a_scoring_failure_keeps_the_reading() -> None:
    scorer = HealthScorer(HealthModel.from_dict(hot_model()))
    scorer.model = None  # type: ignore[assignment]  # any bug inside scoring
    features = dict.fromkeys(FEATURE_NAMES, 0.0)
    before = sample_value("ml_prediction_errors_total", {}) or 0
    assert score_safely(scorer, *reading("t-err", 0, {FEATURES_KEY: edge_block(features)})) is None
    assert sample_value("ml_prediction_errors_total", {}) == before + 1
