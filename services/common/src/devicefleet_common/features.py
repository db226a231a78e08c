"""Health features of a truck: the one definition the edge gateway and the processor share.

A feature vector summarises the last ``WINDOW`` readings of one truck. The edge gateway
(simulator in edge mode) computes it when the reading is taken and ships it in the payload
under ``_features``; the processor computes it itself for readings that arrive without one.
Both call ``compute_features`` on the same numbers, so both get bit-identical vectors
(checked against shared vectors in the tests). Changing anything here is a new
``FEATURE_SET``: models name the feature set they were trained on.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

FEATURE_SET = "truck-v1"
WINDOW = 10  # readings per feature vector

# Reserved payload keys ("_" prefix: never decoded as a measurement).
FEATURES_KEY = "_features"
TRUTH_KEY = "_truth"  # ground truth, attached only in test mode; never a model input

HealthState = Literal["normal", "degrading", "critical", "maintenance"]
HEALTH_STATES: tuple[HealthState, ...] = ("normal", "degrading", "critical", "maintenance")

HEALTH_METRICS = ("engine_temp_c", "oil_pressure_kpa", "vibration_mm_s", "rpm", "speed_kmh")
STATISTICS = ("mean", "std", "min", "max", "slope_per_min")


@dataclass(frozen=True)
class Threshold:
    name: str
    metric: str
    above: bool  # True: counts readings above the limit; False: below it
    limit: float


# Limits a maintenance engineer would put on a haul truck's dashboard.
THRESHOLDS = (
    Threshold("overheat_count", "engine_temp_c", above=True, limit=105.0),
    Threshold("low_oil_count", "oil_pressure_kpa", above=False, limit=260.0),
    Threshold("high_vibration_count", "vibration_mm_s", above=True, limit=8.0),
)

FEATURE_NAMES: tuple[str, ...] = tuple(
    f"{metric}.{stat}" for metric in HEALTH_METRICS for stat in STATISTICS
) + tuple(t.name for t in THRESHOLDS)


class FeatureError(ValueError):
    """A feature vector from the edge that cannot be used; ``reason`` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Sample:
    """One reading reduced to what the features need: device time and the health metrics."""

    timestamp: float  # epoch seconds
    values: Mapping[str, float]


def device_time(timestamp: str) -> float:
    """Epoch seconds of a payload's RFC 3339 timestamp, parsed as ingest and the bridge do."""
    return datetime.fromisoformat(timestamp).timestamp()


def sample_of(timestamp: float, readings: Mapping[str, Any]) -> Sample | None:
    """The health metrics of a reading, or None when one is missing or not a finite number."""
    values: dict[str, float] = {}
    for metric in HEALTH_METRICS:
        value = readings.get(metric)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value):
            return None
        values[metric] = float(value)
    return Sample(timestamp, values)


def compute_features(samples: Sequence[Sample]) -> dict[str, float]:
    """The feature vector of a window of readings, oldest first (at least one)."""
    if not samples:
        raise ValueError("a feature vector needs at least one reading")
    features: dict[str, float] = {}
    span = samples[-1].timestamp - samples[0].timestamp
    n = len(samples)
    for metric in HEALTH_METRICS:
        xs = [s.values[metric] for s in samples]
        mean = math.fsum(xs) / n
        features[f"{metric}.mean"] = mean
        features[f"{metric}.std"] = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
        features[f"{metric}.min"] = min(xs)
        features[f"{metric}.max"] = max(xs)
        features[f"{metric}.slope_per_min"] = (xs[-1] - xs[0]) / span * 60.0 if span > 0 else 0.0
    for t in THRESHOLDS:
        xs = [s.values[t.metric] for s in samples]
        crossed = sum(1 for x in xs if (x > t.limit if t.above else x < t.limit))
        features[t.name] = float(crossed)
    return features


class FeatureWindow:
    """The last ``WINDOW`` readings of one device; yields features once it is full.

    Message ids already in the window are ignored, so a redelivered reading does not count
    twice.
    """

    def __init__(self, size: int = WINDOW) -> None:
        self._samples: deque[tuple[str, Sample]] = deque(maxlen=size)

    def add(self, message_id: str, sample: Sample) -> dict[str, float] | None:
        if any(seen == message_id for seen, _ in self._samples):
            return None
        self._samples.append((message_id, sample))
        if len(self._samples) < (self._samples.maxlen or 0):
            return None
        return compute_features([s for _, s in self._samples])


def edge_block(features: Mapping[str, float]) -> dict[str, Any]:
    """What the edge puts under ``_features`` in a payload."""
    return {"set": FEATURE_SET, "values": dict(features)}


def parse_edge_block(block: Any) -> dict[str, float]:
    """Validate a ``_features`` block; raises ``FeatureError`` with a reason."""
    if not isinstance(block, dict):
        raise FeatureError("invalid_features", f"_features is {type(block).__name__}, not object")
    if block.get("set") != FEATURE_SET:
        raise FeatureError(
            "feature_set_mismatch", f"_features set {block.get('set')!r}, expected {FEATURE_SET}"
        )
    values = block.get("values")
    if not isinstance(values, dict):
        raise FeatureError("invalid_features", "_features.values is not an object")
    missing = [name for name in FEATURE_NAMES if name not in values]
    if missing:
        raise FeatureError("invalid_features", f"_features lacks {', '.join(missing[:3])}")
    out: dict[str, float] = {}
    for name in FEATURE_NAMES:
        value = values[name]
        finite = isinstance(value, int | float) and not isinstance(value, bool)
        if not finite or not math.isfinite(value):
            raise FeatureError("invalid_features", f"_features.{name} is not a finite number")
        out[name] = float(value)
    return out


def truth_of(payload: Mapping[str, Any]) -> HealthState | None:
    """The ground-truth state a test-mode simulator attached, if any."""
    state = payload.get(TRUTH_KEY)
    return state if state in HEALTH_STATES else None
