"""Scoring against ground truth, on sequences small enough to check by hand."""

from __future__ import annotations

import pytest

from devicefleet_ml.evaluate import Scored, classification, detections, evaluate


def seq(*steps: tuple[str, str | None]) -> list[Scored]:
    return [Scored(float(i), t, p) for i, (t, p) in enumerate(steps)]  # type: ignore[arg-type]


def test_precision_recall_and_macro_f1() -> None:
    pairs = [("normal", "normal")] * 8 + [("normal", "degrading")] * 2 + [
        ("degrading", "degrading")] * 3 + [("degrading", "normal")]  # fmt: skip
    confusion, classes, macro, accuracy = classification(pairs)
    by = {c.state: c for c in classes}
    assert confusion["normal"]["degrading"] == 2
    assert by["normal"].precision == pytest.approx(8 / 9)
    assert by["normal"].recall == pytest.approx(8 / 10)
    assert by["degrading"].precision == pytest.approx(3 / 5)
    assert by["degrading"].recall == pytest.approx(3 / 4)
    f1_normal = 2 * (8 / 9) * 0.8 / (8 / 9 + 0.8)
    f1_degrading = 2 * 0.6 * 0.75 / 1.35
    # Classes absent from the truth (critical, maintenance) do not dilute the macro average.
    assert macro == pytest.approx((f1_normal + f1_degrading) / 2)
    assert accuracy == pytest.approx(11 / 14)


def test_time_to_detect_counts_entries_detections_and_misses() -> None:
    truck_a = seq(
        ("normal", None), ("normal", "normal"),
        ("degrading", "normal"), ("degrading", "normal"), ("degrading", "degrading"),  # 2 s
        ("critical", "degrading"), ("critical", "critical"),  # critical after 1 s
        ("maintenance", "maintenance"),
    )  # fmt: skip
    truck_b = seq(
        ("normal", "normal"),
        ("degrading", "normal"), ("degrading", "critical"),  # flagged after 1 s, not detected
        ("normal", "normal"),  # recovered: the degrading episode was missed
    )  # fmt: skip
    found = {d.state: d for d in detections([truck_a, truck_b])}
    assert (found["degrading"].episodes, found["degrading"].delays) == (2, [2.0])
    assert found["degrading"].missed == 1
    assert found["degrading (flagged)"].delays == [2.0, 1.0]
    assert (found["critical"].episodes, found["critical"].delays) == (1, [1.0])
    assert found["degrading"].quantile(0.5) == 2.0
    assert found["critical"].quantile(0.9) == 1.0


def test_a_truck_already_unhealthy_at_the_start_is_not_an_entry() -> None:
    found = {d.state: d for d in detections([seq(("degrading", "normal"), ("degrading", "x"))])}
    assert found["degrading"].episodes == 0
    assert found["degrading"].quantile(0.5) is None


def test_readings_without_prediction_are_reported_not_scored() -> None:
    report = evaluate([seq(("normal", None), ("normal", "normal"), ("normal", "normal"))])
    assert (report.scored, report.unscored) == (2, 1)
    assert report.accuracy == 1.0
