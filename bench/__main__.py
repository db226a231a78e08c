"""``python -m bench``: run the benchmarks and write their report.

python -m bench                 # every benchmark, full size → docs/BENCHMARKS.md
python -m bench --only P3,P4    # just these; the others keep their last results
python -m bench --quick         # small sizes, a smoke run → $TMPDIR/devicefleet-bench
python -m bench --report-only   # re-render the report from the stored results
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.report import render
from bench.support import RESULTS, Result, machine
from tests.support import REPO

BENCHMARKS = {
    "P1": "bench.p1_ingest",
    "P2": "bench.p2_bridge",
    "P3": "bench.p3_processor",
    "P4": "bench.p4_sink",
    "P5": "bench.p5_end_to_end",
    "P6": "bench.p6_simulator",
    "P7": "bench.p7_operator",
    "P8": "bench.p8_breaker_status",
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default="", help="comma-separated keys, e.g. P3,P4")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, help="where results and the report go")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    keys = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(BENCHMARKS)
    unknown = [k for k in keys if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "devicefleet-bench" if args.quick else RESULTS
    )
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stored = out / "results.json"
    state = json.loads(stored.read_text()) if stored.exists() else {"results": {}}
    if not args.report_only:
        log_dir = Path(tempfile.gettempdir()) / "devicefleet-bench" / "logs"  # services' logs
        log_dir.mkdir(parents=True, exist_ok=True)
        for key in keys:
            print(f"bench: {key} ...", flush=True)
            started = time.monotonic()
            module = importlib.import_module(BENCHMARKS[key])
            result: Result = module.run(quick=args.quick, log_dir=log_dir)
            print(
                f"bench: {key} {result.subject.value:,.0f} {result.subject.unit} = "
                f"{result.ratio():.2f}× {result.baselines[0].label} "
                f"({'met' if result.met else 'missed'}: {result.goal}) "
                f"in {time.monotonic() - started:.0f} s",
                flush=True,
            )
            state["results"][key] = result.to_json()
            state["machine"] = machine()
            state["quick"] = args.quick
            # After each one: a later failure never costs the results already measured.
            # Unsorted: a detail table's first column is its plot's x axis.
            stored.write_text(json.dumps(state, indent=2) + "\n")
    report = out.parent / "BENCHMARKS.md" if out == RESULTS else out / "BENCHMARKS.md"
    render(state, out, report)
    print(f"bench: report at {report.relative_to(REPO) if report.is_relative_to(REPO) else report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
