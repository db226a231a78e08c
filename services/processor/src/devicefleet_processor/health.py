"""Health prediction for trucks: features (from the edge, or computed here), then the model.

Per device the processor keeps the last ``WINDOW`` readings for trucks that arrive without
edge features; Kafka's key is the device id, so one processor sees all of a device's
readings in order. The newest verdict per device feeds ``ml_devices_predicted``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from devicefleet_common.features import (
    FEATURES_KEY,
    FeatureError,
    FeatureWindow,
    parse_edge_block,
    sample_of,
    truth_of,
)
from devicefleet_common.logging import get_logger
from devicefleet_common.schemas import DecodedRecord, HealthPrediction, RawEnvelope
from devicefleet_processor.health_model import HealthModel

log = get_logger("devicefleet.processor.health")

PREDICTIONS = Counter(
    "ml_predictions_total", "Health predictions made", ["model_version", "state", "source"]
)
PREDICTION_DURATION = Histogram(
    "ml_prediction_duration_seconds",
    "Model inference time per prediction",
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
)
ACCURACY = Gauge(
    "ml_prediction_accuracy",
    "Correct share of the last predictions that carried ground truth (test mode)",
    ["model_version"],
)
DEVICES_PREDICTED = Gauge(
    "ml_devices_predicted", "Devices whose newest prediction is this state", ["fleet", "state"]
)
EDGE_FEATURES_REJECTED = Counter(
    "ml_edge_features_rejected_total",
    "Edge feature vectors refused (features computed here instead)",
    ["reason"],
)
PREDICTION_ERRORS = Counter("ml_prediction_errors_total", "Readings left unscored by an error")
for _reason in ("invalid_features", "feature_set_mismatch"):
    EDGE_FEATURES_REJECTED.labels(_reason)  # exported as 0 from the start, so rate() works

ACCURACY_WINDOW = 1000
GAUGE_REFRESH_SECONDS = 1.0


@dataclass
class Verdict:
    fleet: str
    state: str
    at: float  # processor clock


class HealthScorer:
    def __init__(
        self,
        model: HealthModel,
        stale_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.stale_after = stale_after
        self._clock = clock
        self._windows: dict[str, FeatureWindow] = {}
        self._latest: dict[str, Verdict] = {}
        self._truth_hits: deque[bool] = deque(maxlen=ACCURACY_WINDOW)
        self._published: set[tuple[str, str]] = set()
        self._refreshed_at = float("-inf")

    def score(self, envelope: RawEnvelope, record: DecodedRecord) -> HealthPrediction | None:
        """The prediction for one decoded truck reading; None until its window is full."""
        if record.profile != "truck" or not isinstance(envelope.payload, dict):
            return None
        payload = envelope.payload
        features, source = None, "edge"
        if FEATURES_KEY in payload:
            try:
                features = parse_edge_block(payload[FEATURES_KEY])
            except FeatureError as exc:
                EDGE_FEATURES_REJECTED.labels(exc.reason).inc()
                log.warning(
                    "edge features refused, computing them here",
                    reason=exc.reason,
                    detail=exc.detail,
                )
        if features is None:
            source = "processor"
            features = self._from_window(record)
        if features is None:
            return None
        started = time.perf_counter()
        state, probabilities = self.model.predict(features)
        PREDICTION_DURATION.observe(time.perf_counter() - started)
        PREDICTIONS.labels(self.model.version, state, source).inc()
        truth = truth_of(payload)
        if truth is not None:
            self._truth_hits.append(truth == state)
            ACCURACY.labels(self.model.version).set(sum(self._truth_hits) / len(self._truth_hits))
        fleet = str(record.attributes.get("fleet", ""))
        self._latest[record.device_id] = Verdict(fleet, state, self._clock())
        return HealthPrediction(
            model_version=self.model.version,
            state=state,
            probabilities=probabilities,
            features=features,
            features_source="edge" if source == "edge" else "processor",
            true_state=truth,
        )

    def _from_window(self, record: DecodedRecord) -> dict[str, float] | None:
        readings = {m.metric: m.value for m in record.measurements if m.value is not None}
        sample = sample_of(record.timestamp, readings)
        if sample is None:
            return None
        window = self._windows.setdefault(record.device_id, FeatureWindow())
        return window.add(record.message_id, sample)

    def device_counts(self) -> dict[tuple[str, str], int]:
        """(fleet, state) -> devices whose newest verdict is fresh; forgets stale devices."""
        cutoff = self._clock() - self.stale_after
        for device in [d for d, v in self._latest.items() if v.at < cutoff]:
            del self._latest[device]
            self._windows.pop(device, None)
        counts: dict[tuple[str, str], int] = {}
        for verdict in self._latest.values():
            key = (verdict.fleet, verdict.state)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def refresh_gauges(self, force: bool = False) -> None:
        """Publish ``device_counts`` (at most once a second: it walks every device)."""
        now = self._clock()
        if not force and now - self._refreshed_at < GAUGE_REFRESH_SECONDS:
            return
        self._refreshed_at = now
        counts = self.device_counts()
        for fleet, state in self._published - counts.keys():
            DEVICES_PREDICTED.remove(fleet, state)
        for (fleet, state), n in counts.items():
            DEVICES_PREDICTED.labels(fleet, state).set(n)
        self._published = set(counts)


def score_safely(
    scorer: HealthScorer, envelope: RawEnvelope, record: DecodedRecord
) -> HealthPrediction | None:
    """A scoring bug must never cost the reading: it is stored without a prediction."""
    try:
        return scorer.score(envelope, record)
    except Exception:
        PREDICTION_ERRORS.inc()
        log.exception("health prediction failed; reading kept without one")
        return None
