"""``devicefleet-ml train|evaluate``: the truck health model, offline."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from devicefleet_ml import report, train
from devicefleet_ml.evaluate import evaluate
from devicefleet_processor.health_model import HealthModel

DOCS = Path(__file__).resolve().parents[3] / "docs" / "health"
EVAL_SEED, EVAL_TRUCKS, EVAL_MINUTES = 42, 50, 30.0


def simulated_source(seed: int, trucks: int, minutes: float) -> str:
    return f"devicefleet-ml evaluate --seed {seed} --trucks {trucks} --minutes {minutes:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devicefleet-ml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("train", help="simulate trucks, fit the model, write the artifact")
    fit.add_argument("--seed", type=int, default=1)
    fit.add_argument("--trucks", type=int, default=200)
    fit.add_argument("--minutes", type=float, default=60.0)
    fit.add_argument("--out", type=Path, default=train.DEFAULT_OUT)

    score = sub.add_parser("evaluate", help="score predictions against the ground truth")
    score.add_argument("--model", type=Path, help="artifact (default: the processor's)")
    score.add_argument("--seed", type=int, default=EVAL_SEED)
    score.add_argument("--trucks", type=int, default=EVAL_TRUCKS)
    score.add_argument("--minutes", type=float, default=EVAL_MINUTES)
    score.add_argument("--database", metavar="URL", help="score a live test-mode run instead")
    score.add_argument("--fleet", help="with --database: only this fleet")
    score.add_argument("--since", type=datetime.fromisoformat, help="with --database")
    score.add_argument("--out", type=Path, default=DOCS, help="where evaluation.md + PNGs go")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.command == "train":
        artifact = train.train(args.seed, args.trucks, args.minutes)
        train.write(artifact, args.out)
        print(f"wrote {args.out} ({artifact['training']})")
        return 0

    if args.database:
        sequences = report.from_database(args.database, args.fleet, args.since)
        source = "devicefleet-ml evaluate --database URL" + (f" --fleet {args.fleet}" if args.fleet
                                                            else "")  # fmt: skip
        title = "Truck health model: live run"
    else:
        model = HealthModel.load(args.model)
        sequences = report.simulated(model, args.seed, args.trucks, args.minutes)
        source = simulated_source(args.seed, args.trucks, args.minutes)
        title = f"Truck health model {model.version}: evaluation on a simulated fleet"
    if not any(sequences):
        print("no scored readings (is groundTruth on for that fleet?)", file=sys.stderr)
        return 1
    result = evaluate(sequences)
    written = report.write(result, args.out, title, source)
    print(report.markdown(result, title, source, images=False))
    print(f"wrote {', '.join(map(str, written))} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
