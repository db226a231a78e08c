"""The truck health classifier at prediction time: a multinomial logistic regression read
from a small JSON artifact, evaluated in plain Python.

The artifact is trained offline (``devicefleet-ml train``, scikit-learn) and versioned in the
package, so the processor image needs neither scikit-learn nor numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

from devicefleet_common.features import FEATURE_NAMES, FEATURE_SET, HEALTH_STATES, HealthState

DEFAULT_MODEL = "truck-health-v1.json"


class ModelError(ValueError):
    pass


@dataclass(frozen=True)
class HealthModel:
    version: str
    feature_set: str
    classes: tuple[HealthState, ...]
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]  # one row per class
    intercept: tuple[float, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthModel:
        try:
            model = cls(
                version=str(data["version"]),
                feature_set=str(data["feature_set"]),
                classes=tuple(data["classes"]),
                features=tuple(data["features"]),
                center=tuple(float(x) for x in data["center"]),
                scale=tuple(float(x) for x in data["scale"]),
                coef=tuple(tuple(float(x) for x in row) for row in data["coef"]),
                intercept=tuple(float(x) for x in data["intercept"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"not a health model artifact: {exc}") from exc
        model.check()
        return model

    @classmethod
    def load(cls, path: str | Path | None = None) -> HealthModel:
        """The artifact at ``path``, or the one shipped with the processor."""
        if path is None:
            text = (resources.files("devicefleet_processor") / "models" / DEFAULT_MODEL).read_text()
        else:
            text = Path(path).read_text()
        return cls.from_dict(cast(dict[str, Any], json.loads(text)))

    def check(self) -> None:
        """Refuse an artifact this code would evaluate wrongly (fail at start, not per record)."""
        if self.feature_set != FEATURE_SET or self.features != FEATURE_NAMES:
            raise ModelError(
                f"model {self.version} was trained on feature set {self.feature_set}; "
                f"this processor computes {FEATURE_SET}"
            )
        if not set(self.classes) <= set(HEALTH_STATES):
            raise ModelError(f"model {self.version} has unknown classes {self.classes}")
        n = len(self.features)
        if len(self.center) != n or len(self.scale) != n or any(s == 0 for s in self.scale):
            raise ModelError(f"model {self.version}: center/scale do not match its features")
        if len(self.coef) != len(self.classes) or len(self.intercept) != len(self.classes):
            raise ModelError(f"model {self.version}: one coefficient row per class expected")
        if any(len(row) != n for row in self.coef):
            raise ModelError(f"model {self.version}: coefficient rows must match its features")

    def predict(self, features: dict[str, float]) -> tuple[HealthState, dict[str, float]]:
        """The most likely state and every state's probability."""
        z = [
            (features[name] - c) / s
            for name, c, s in zip(self.features, self.center, self.scale, strict=True)
        ]
        logits = [
            math.fsum(w * x for w, x in zip(row, z, strict=True)) + b
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = math.fsum(exps)
        probabilities: dict[str, float] = {
            c: e / total for c, e in zip(self.classes, exps, strict=True)
        }
        best = max(range(len(self.classes)), key=lambda i: logits[i])
        return self.classes[best], probabilities
