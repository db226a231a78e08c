"""Coverage-guided fuzzing (atheris + libFuzzer) of the decoders and envelope parsers, a
bounded job like the benchmarks: ``make fuzz``.

python -m bench.fuzz_decoders                          # every target, 60 s each
python -m bench.fuzz_decoders --seconds 10 --only processor,sink
python -m bench.fuzz_decoders --update-corpus          # merge new coverage into the repo corpus

Each target (bench/fuzz_targets.py) runs in its own process, starting from its seed corpus in
tests/fuzz/corpus/<target>/ (read-only; what libFuzzer finds goes to a scratch directory), and
stops after ``--seconds``. A contract break or an unexpected exception stops the target, keeps
the input as ``crash-*`` in the scratch directory and fails the job (exit 1). The summary
(executions, coverage, features, corpus, crashes) is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
TARGET_NAMES = ("processor", "bridge", "http", "sink")
# Instrumented for coverage: the project's parsers (pydantic-core itself is compiled).
INSTRUMENTED = [
    "devicefleet_common",
    "devicefleet_ingest",
    "devicefleet_processor",
    "devicefleet_sink",
    "bench.fuzz_targets",
]
MAX_INPUT_BYTES = 4096


@dataclass(frozen=True)
class FuzzResult:
    target: str
    seconds: float
    executions: int
    exec_per_second: int
    coverage: int  # libFuzzer's "cov": instrumented edges reached
    features: int  # "ft": edges plus hit-count buckets and value profiles
    corpus_units: int
    seed_units: int
    crashes: list[str]
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.crashes


def _last_int(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def parse_libfuzzer_output(text: str) -> dict[str, int]:
    """The final figures of a libFuzzer run from its stderr (``-print_final_stats=1``)."""
    return {
        "executions": _last_int(r"stat::number_of_executed_units:\s+(\d+)", text),
        "exec_per_second": _last_int(r"stat::average_exec_per_sec:\s+(\d+)", text),
        "coverage": _last_int(r"\bcov: (\d+)", text),
        "features": _last_int(r"\bft: (\d+)", text),
        "corpus_units": _last_int(r"\bcorp: (\d+)/", text),
    }


def run_target(target: str, seconds: int, work: Path) -> FuzzResult:
    scratch = work / target
    (scratch / "corpus").mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / target
    command = [
        sys.executable,
        "-m",
        "bench.fuzz_decoders",
        "--child",
        target,
        str(scratch / "corpus"),  # first directory: where libFuzzer adds what it finds
        str(seeds),
        f"-max_total_time={seconds}",
        f"-max_len={MAX_INPUT_BYTES}",
        "-print_final_stats=1",
        f"-artifact_prefix={scratch}/",
        "-timeout=10",
        "-rss_limit_mb=2048",
    ]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    (scratch / "libfuzzer.log").write_text(proc.stdout + proc.stderr)
    figures = parse_libfuzzer_output(proc.stderr)
    crashes = sorted(str(p) for p in scratch.glob("crash-*")) + sorted(
        str(p) for p in scratch.glob("timeout-*")
    )
    if proc.returncode != 0 and not crashes:
        print(proc.stderr[-3000:], file=sys.stderr)
    return FuzzResult(
        target=target,
        seconds=round(time.monotonic() - started, 1),
        seed_units=sum(1 for p in seeds.iterdir() if p.is_file()),
        crashes=crashes,
        exit_code=proc.returncode,
        **figures,
    )


def merge_into_repo_corpus(target: str, work: Path) -> int:
    """Add the scratch inputs that reach new coverage to the repo corpus (libFuzzer -merge);
    how many files were added."""
    # The merge re-runs the fuzzer as a subprocess through argv[0]: an executable wrapper.
    wrapper = work / f"run-{target}.sh"
    wrapper.write_text(
        f'#!/bin/sh\ncd "{REPO}" && exec "{sys.executable}" -m bench.fuzz_decoders '
        f'--child {target} "$@"\n'
    )
    wrapper.chmod(0o755)
    before = len(list((CORPUS / target).iterdir()))
    subprocess.run(
        [str(wrapper), "-merge=1", str(CORPUS / target), str(work / target / "corpus")],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "FUZZ_ARGV0": str(wrapper)},
    )
    return len(list((CORPUS / target).iterdir())) - before


def child(argv: list[str]) -> None:
    """One target under libFuzzer; never returns (libFuzzer exits the process)."""
    import atheris  # type: ignore[import-untyped]  # no stubs published

    target = argv[0]
    with atheris.instrument_imports(include=INSTRUMENTED):
        from bench import fuzz_targets
    test_one_input = fuzz_targets.TARGETS[target]

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return fuzz_targets.mutate_json(data, max_size, seed, atheris.Mutate)

    argv0 = os.environ.get("FUZZ_ARGV0", sys.argv[0])
    atheris.Setup([argv0, *argv[1:]], test_one_input, custom_mutator=mutator)
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_decoders")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--only", default="", help=f"comma-separated of {', '.join(TARGET_NAMES)}")
    parser.add_argument("--out", type=Path, help="scratch dir (default $TMPDIR/devicefleet-fuzz)")
    parser.add_argument("--update-corpus", action="store_true", help="merge new coverage into it")
    args = parser.parse_args()
    targets = [t.strip() for t in args.only.split(",") if t.strip()] or list(TARGET_NAMES)
    if unknown := [t for t in targets if t not in TARGET_NAMES]:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGET_NAMES)}")
    work: Path = (args.out or Path(tempfile.gettempdir()) / "devicefleet-fuzz").resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for target in targets:
        print(f"fuzz: {target} for {args.seconds} s ...", flush=True)
        result = run_target(target, args.seconds, work)
        results.append(result)
        print(
            f"fuzz: {target}: {result.executions:,} executions ({result.exec_per_second:,}/s), "
            f"cov {result.coverage}, ft {result.features}, corpus {result.seed_units} seeds -> "
            f"{result.corpus_units} units, "
            + (f"CRASHES {result.crashes}" if result.crashes else f"exit {result.exit_code}"),
            flush=True,
        )
        if args.update_corpus and result.ok:
            added = merge_into_repo_corpus(target, work)
            print(f"fuzz: {target}: {added} inputs with new coverage added to {CORPUS / target}")
    summary = work / "results.json"
    summary.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(f"fuzz: summary in {summary}; libFuzzer logs in {work}/<target>/libfuzzer.log")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
