"""Score health predictions against the simulator's ground truth.

Classification: precision / recall / F1 per class, macro-F1, accuracy, confusion matrix.
Time-to-detect: for every stretch where a truck *enters* a state (degrading, critical), the
seconds from its first reading in that state to the first reading predicted as that state
("detected"), or, for degrading, predicted degrading or critical ("flagged": what an
operator acts on). A stretch that ends first is "missed".
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from devicefleet_common.features import HEALTH_STATES, HealthState

UNHEALTHY: frozenset[str] = frozenset({"degrading", "critical"})


@dataclass(frozen=True)
class Scored:
    time: float
    true_state: HealthState
    predicted: HealthState | None  # None: no prediction for this reading (window not full)


@dataclass(frozen=True)
class ClassScore:
    state: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Detection:
    """Entries into one state and how fast they were recognised."""

    state: str
    episodes: int = 0
    delays: list[float] = field(default_factory=list)

    @property
    def detected(self) -> int:
        return len(self.delays)

    @property
    def missed(self) -> int:
        return self.episodes - self.detected

    def quantile(self, q: float) -> float | None:
        if not self.delays:
            return None
        if len(self.delays) == 1:
            return self.delays[0]
        return statistics.quantiles(self.delays, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class Report:
    states: tuple[str, ...]
    confusion: dict[str, dict[str, int]]  # true -> predicted -> count
    classes: list[ClassScore]
    macro_f1: float
    accuracy: float
    scored: int
    unscored: int
    detections: list[Detection]


def classification(
    pairs: Iterable[tuple[str, str]], states: Sequence[str] = HEALTH_STATES
) -> tuple[dict[str, dict[str, int]], list[ClassScore], float, float]:
    """(confusion, per-class scores, macro-F1 over classes present in truth, accuracy)."""
    confusion = {t: dict.fromkeys(states, 0) for t in states}
    for truth, predicted in pairs:
        confusion[truth][predicted] += 1
    scores = []
    for s in states:
        tp = confusion[s][s]
        predicted_s = sum(confusion[t][s] for t in states)
        support = sum(confusion[s].values())
        precision = tp / predicted_s if predicted_s else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(ClassScore(s, precision, recall, f1, support))
    present = [c for c in scores if c.support]
    macro = sum(c.f1 for c in present) / len(present) if present else 0.0
    total = sum(c.support for c in scores)
    accuracy = sum(confusion[s][s] for s in states) / total if total else 0.0
    return confusion, scores, macro, accuracy


def detections(sequences: Iterable[Sequence[Scored]]) -> list[Detection]:
    """Entries into degrading and critical across devices (each sequence in time order)."""
    found = {
        "degrading": Detection("degrading"),
        "degrading (flagged)": Detection("degrading (flagged)"),
        "critical": Detection("critical"),
    }
    for readings in sequences:
        for i in range(1, len(readings)):
            entered = readings[i].true_state
            if entered == readings[i - 1].true_state or entered not in UNHEALTHY:
                continue
            _episode(found[entered], readings, i, {entered})
            if entered == "degrading":
                # Degrading that turns critical is still caught if flagged either way.
                _episode(found["degrading (flagged)"], readings, i, UNHEALTHY)
    return list(found.values())


def _episode(
    detection: Detection, readings: Sequence[Scored], start: int, states: Iterable[str]
) -> None:
    """From ``start`` while the truth stays in ``states``: the first prediction in them."""
    states = frozenset(states)
    detection.episodes += 1
    began = readings[start].time
    for reading in readings[start:]:
        if reading.true_state not in states:
            return  # left the state undetected: missed
        if reading.predicted in states:
            detection.delays.append(reading.time - began)
            return


def evaluate(sequences: Sequence[Sequence[Scored]]) -> Report:
    pairs = [(r.true_state, r.predicted) for seq in sequences for r in seq if r.predicted]
    unscored = sum(1 for seq in sequences for r in seq if r.predicted is None)
    confusion, classes, macro, accuracy = classification(pairs)
    return Report(
        states=HEALTH_STATES,
        confusion=confusion,
        classes=classes,
        macro_f1=macro,
        accuracy=accuracy,
        scored=len(pairs),
        unscored=unscored,
        detections=detections(sequences),
    )
