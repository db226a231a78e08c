"""Fit the truck health model on simulated trucks and write the processor's artifact.

A standardisation + multinomial logistic regression: small enough to ship as JSON and
evaluate in plain Python, and the classes are well separated by windowed means.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from devicefleet_common.features import FEATURE_NAMES, FEATURE_SET, HEALTH_STATES
from devicefleet_ml.simulate import simulate_fleet

MODEL_VERSION = "truck-health-v1"
DEFAULT_OUT = (
    Path(__file__).resolve().parents[3]
    / "services/processor/src/devicefleet_processor/models"
    / f"{MODEL_VERSION}.json"
)


def training_set(seed: int, trucks: int, minutes: float) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for item in simulate_fleet(seed, trucks, minutes):
        if item.features is not None:
            rows.append([item.features[name] for name in FEATURE_NAMES])
            labels.append(item.true_state)
    return np.array(rows, dtype=float), np.array(labels)


def fit(x: np.ndarray, y: np.ndarray) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(x)
    # Degrading and critical are short stretches between long normal ones: balance the
    # classes, or the model learns that "normal" is almost always right.
    classifier = LogisticRegression(class_weight="balanced", max_iter=5000, C=1.0)
    classifier.fit(scaler.transform(x), y)
    return scaler, classifier


def artifact(
    scaler: StandardScaler, classifier: LogisticRegression, metadata: dict[str, Any]
) -> dict[str, Any]:
    """The JSON ``HealthModel.from_dict`` reads; classes in ``HEALTH_STATES`` order."""
    index = {label: i for i, label in enumerate(classifier.classes_)}
    classes = [state for state in HEALTH_STATES if state in index]
    return {
        "version": MODEL_VERSION,
        "feature_set": FEATURE_SET,
        "features": list(FEATURE_NAMES),
        "classes": classes,
        "center": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "coef": [[float(v) for v in classifier.coef_[index[c]]] for c in classes],
        "intercept": [float(classifier.intercept_[index[c]]) for c in classes],
        "training": metadata,
    }


def train(seed: int = 1, trucks: int = 200, minutes: float = 60) -> dict[str, Any]:
    x, y = training_set(seed, trucks, minutes)
    scaler, classifier = fit(x, y)
    accuracy = float(classifier.score(scaler.transform(x), y))
    metadata = {
        "seed": seed,
        "trucks": trucks,
        "minutes": minutes,
        "samples": {state: int(n) for state, n in sorted(Counter(y.tolist()).items())},
        "train_accuracy": round(accuracy, 4),
        "scikit_learn": sklearn.__version__,
        "command": f"devicefleet-ml train --seed {seed} --trucks {trucks} --minutes {minutes:g}",
    }
    return artifact(scaler, classifier, metadata)


def write(model: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")
