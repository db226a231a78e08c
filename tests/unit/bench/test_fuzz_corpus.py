"""The fuzz job's corpus replayed through its targets on every test run (CI sees each seed
and each input a fuzz run added), and the job's reading of libFuzzer's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.fuzz_decoders import TARGET_NAMES, parse_libfuzzer_output
from bench.fuzz_targets import CORPUS, TARGETS, documented_reasons, mutate_json

INPUTS = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


def test_every_target_has_a_seed_corpus() -> None:
    assert set(TARGETS) == set(TARGET_NAMES)
    for target in TARGETS:
        assert len(list((CORPUS / target).iterdir())) >= 4, target


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_corpus_input_keeps_its_target_contract(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


def test_dead_letter_reasons_are_read_from_the_docs() -> None:
    assert {"invalid_envelope", "unknown_device", "timestamp_too_old", "invalid_metric"} <= (
        documented_reasons()
    )


def test_libfuzzer_figures() -> None:
    stderr = """INFO: Seed: 1
#2	INITED cov: 40 ft: 41 corp: 12/1500b exec/s: 0 rss: 60Mb
#4096	pulse  cov: 90 ft: 200 corp: 30/3000b lim: 100 exec/s: 2048 rss: 70Mb
#9000	DONE   cov: 95 ft: 230 corp: 33/3100b lim: 100 exec/s: 1500 rss: 71Mb
Done 9000 runs in 6 second(s)
stat::number_of_executed_units: 9000
stat::average_exec_per_sec:     1500
"""
    assert parse_libfuzzer_output(stderr) == {
        "executions": 9000,
        "exec_per_second": 1500,
        "coverage": 95,
        "features": 230,
        "corpus_units": 33,
    }


def test_mutator_changes_json_structurally_and_keeps_the_bridge_topic() -> None:
    def fallback(data: bytes, max_size: int) -> bytes:
        return b"<fallback>"

    seed = (CORPUS / "processor" / "sensor.json").read_bytes()
    mutants = {mutate_json(seed, 4096, n, fallback) for n in range(200)}
    structural = mutants - {b"<fallback>"}
    assert b"<fallback>" in mutants  # some byte-level mutations too
    assert len(structural) > 50
    for mutant in structural:
        json.loads(mutant)  # still JSON (NaN/Infinity literals included)
        assert mutant != seed

    topic, _, payload = (CORPUS / "bridge" / "sensor").read_bytes().partition(b"\n")
    kept = [
        m
        for n in range(100)
        if (m := mutate_json(topic + b"\n" + payload, 4096, n, fallback)) != b"<fallback>"
    ]
    assert sum(m.startswith(topic + b"\n") for m in kept) > len(kept) / 2
    assert mutate_json(b"\xff not json", 4096, 1, fallback) == b"<fallback>"
