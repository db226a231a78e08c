"""The benchmark report is generated (never edited by hand) and the measuring helpers are
honest about what they count."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from bench.p5_end_to_end import quantile
from bench.report import render
from bench.support import RESULTS, Measure, Result, rate_until
from tests.support import REPO


def test_docs_benchmarks_is_rendered_from_the_stored_results(tmp_path: Path) -> None:
    state = json.loads((RESULTS / "results.json").read_text())
    out = tmp_path / "benchmarks"
    out.mkdir()
    if (RESULTS / "notes.md").exists():
        (out / "notes.md").write_text((RESULTS / "notes.md").read_text())
    render(state, out, tmp_path / "BENCHMARKS.md")
    expected = (tmp_path / "BENCHMARKS.md").read_text()
    assert (REPO / "docs" / "BENCHMARKS.md").read_text() == expected, (
        "docs/BENCHMARKS.md differs from `python -m bench --report-only`"
    )
    for png in out.glob("*.png"):
        assert (RESULTS / png.name).exists(), f"plot {png.name} missing from docs/benchmarks"


def test_stored_results_state_their_goals_truthfully() -> None:
    state = json.loads((RESULTS / "results.json").read_text())
    if state["quick"]:  # a smoke run is published only under its banner
        assert "**Quick mode**" in (REPO / "docs" / "BENCHMARKS.md").read_text()
    for data in state["results"].values():
        result = Result.from_json(data)
        assert result.subject.value > 0
        assert all(b.value > 0 for b in result.baselines)
        assert result.command.startswith("make bench ONLY=")


def test_rate_counts_from_the_first_progress_not_from_the_start() -> None:
    # 0, 0, 0 (start-up), then 10 per observation up to 50.
    values = itertools.chain([0, 0, 0], range(10, 1000, 10))
    rate = rate_until(lambda: next(values), 50, timeout=5, interval=0.01)
    assert rate.count == 40  # 10 -> 50: the first observed progress is the baseline


def test_rate_fails_when_the_subject_dies() -> None:
    with pytest.raises(RuntimeError, match="exited at 0 of 10"):
        rate_until(lambda: 0, 10, timeout=5, interval=0.01, alive=lambda: False)


def test_ratio_against_each_baseline() -> None:
    result = Result(
        key="PX",
        title="t",
        subject=Measure("s", 80, "msgs/s"),
        baselines=[Measure("a", 100, "msgs/s"), Measure("b", 40, "msgs/s")],
        goal="g",
        met=True,
        command="make bench ONLY=PX",
        setup="s",
    )
    assert (result.ratio(0), result.ratio(1)) == (0.8, 2.0)
    assert Result.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_a_time_is_better_when_lower() -> None:
    result = Result(
        key="PX",
        title="t",
        subject=Measure("operator", 30, "s", lower_is_better=True),
        baselines=[Measure("raw loop", 15, "s", lower_is_better=True)],
        goal="g",
        met=True,
        command="make bench ONLY=PX",
        setup="s",
    )
    assert result.ratio() == 0.5  # twice as slow as the baseline: 0.5, never 2


def test_latency_quantile_reads_the_buckets_increase_like_promql() -> None:
    before = [(0.5, 10.0), (1.0, 10.0), (math.inf, 10.0)]  # earlier traffic, not counted
    after = [(0.5, 60.0), (1.0, 108.0), (math.inf, 110.0)]  # +50 ≤ 0.5 s, +48 ≤ 1 s, +2 more
    assert quantile(0.5, before, after) == 0.5
    assert quantile(0.9, before, after) == pytest.approx(0.5 + 0.5 * (90 - 50) / 48)
    assert quantile(0.99, before, after) == 1.0  # beyond the last finite bound: that bound
    assert math.isnan(quantile(0.99, after, after))  # nothing new, no latency
