"""The model artifact: reproducible training, the runtime predictor agreeing with
scikit-learn, and the evaluation page in docs/ being what the code produces today."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devicefleet_common.features import FEATURE_NAMES, FEATURE_SET
from devicefleet_ml import cli, report, train
from devicefleet_ml.evaluate import evaluate
from devicefleet_processor.health_model import HealthModel
from tests.support import REPO

DOCS = REPO / "docs" / "health"


def test_training_is_deterministic_and_the_runtime_model_agrees_with_sklearn() -> None:
    first, second = train.train(seed=3, trucks=6, minutes=8), train.train(seed=3, trucks=6,
                                                                          minutes=8)  # fmt: skip
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)

    x, y = train.training_set(seed=3, trucks=6, minutes=8)
    scaler, classifier = train.fit(x, y)
    runtime = HealthModel.from_dict(train.artifact(scaler, classifier, {}))
    expected = classifier.predict(scaler.transform(x))
    probabilities = classifier.predict_proba(scaler.transform(x))
    column = {c: i for i, c in enumerate(classifier.classes_)}
    for row, want, probs in zip(x, expected, probabilities, strict=True):
        state, got = runtime.predict(dict(zip(FEATURE_NAMES, row.tolist(), strict=True)))
        assert state == want
        for cls, p in got.items():
            assert p == pytest.approx(probs[column[cls]], abs=1e-9)
    assert len(np.unique(y)) >= 3  # the small run still sees several states


def test_the_shipped_artifact_loads_and_names_its_training() -> None:
    model = HealthModel.load()
    assert (model.version, model.feature_set) == (train.MODEL_VERSION, FEATURE_SET)
    assert model.features == FEATURE_NAMES
    raw = json.loads(train.DEFAULT_OUT.read_text())
    assert raw["training"]["command"].startswith("devicefleet-ml train")
    assert train.DEFAULT_OUT.stat().st_size < 20_000


def test_the_evaluation_page_is_current_and_its_claims_hold(tmp_path: object) -> None:
    seed, trucks, minutes = cli.EVAL_SEED, cli.EVAL_TRUCKS, cli.EVAL_MINUTES
    model = HealthModel.load()
    result = evaluate(report.simulated(model, seed, trucks, minutes))
    title = f"Truck health model {model.version}: evaluation on a simulated fleet"
    page = report.markdown(result, title, cli.simulated_source(seed, trucks, minutes))
    assert (DOCS / "evaluation.md").read_text() == page, "run `make health-eval`"
    assert minutes >= 10  # the issue asks for at least 10 minutes of simulated time
    # The claims docs/health.md makes.
    assert result.macro_f1 >= 0.9
    degrading = next(d for d in result.detections if d.state == "degrading")
    assert degrading.episodes >= 100
    assert degrading.detected >= degrading.episodes * 0.8
    assert (degrading.quantile(0.5) or 99) <= 15
    for image in ("confusion-matrix.png", "detection-delay.png"):
        assert (DOCS / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
