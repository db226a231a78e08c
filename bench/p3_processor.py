"""P3: processor decode + enrich msgs/s vs a confluent-kafka pass-through.

The raw topic is filled with HTTP-ingested readings of registered devices first. The
processor (a real process with its own consumer group, the device registry in PostgreSQL
and the truck health model on, as deployed) then drains it; the baseline
(``bench/passthrough.py``) forwards the same records unchanged with the same client settings
and the same ack-then-commit loop. Both are timed the same way: records in their output
topic, from the first to the last.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg

from bench.support import (
    DATABASE_URL,
    KAFKA,
    LOAD_CPUS,
    SUBJECT_CPUS,
    Measure,
    Result,
    create_topic,
    delete_topics,
    fill_topic,
    pin_stack,
    pinned,
    rate_until,
    run_id,
    topic_count,
    watermark_consumer,
)
from bench.workload import Fleet, raw_record, readings
from tests.support import ServiceProcess, free_port

KEY = "P3"
GOAL = 0.7


def _drain(
    name: str, argv: list[str], env: dict[str, str], output: str, count: int, log_dir: Path
) -> float:
    watermarks = watermark_consumer()
    process = ServiceProcess(name, pinned(argv, SUBJECT_CPUS), env, log_dir).start()
    try:
        rate = rate_until(
            lambda: topic_count(watermarks, output), count, 600, interval=0.1, alive=process.alive
        )
    finally:
        process.stop()
        watermarks.close()
    return rate.per_second


def run(quick: bool, log_dir: Path) -> Result:
    count = 10_000 if quick else 100_000
    batch_sizes = [500] if quick else [100, 500, 2000]
    rid = run_id()
    fleet = Fleet(f"bench-{rid}", 50)
    fleet.register(DATABASE_URL)
    raw = f"bench_raw_{rid}"
    topics = [raw]
    details: list[dict[str, Any]] = []
    rates: dict[int, float] = {}
    baseline: list[float] = []
    try:
        create_topic(raw)
        fill_topic(raw, [raw_record(m) for m in readings(fleet, count)])
        with pin_stack(LOAD_CPUS, "kafka", "postgres"):
            for batch in batch_sizes:
                passed, decoded = f"bench_passed_{rid}_{batch}", f"bench_decoded_{rid}_{batch}"
                topics += [passed, decoded, f"{decoded}_dlq"]
                for topic in topics[-3:]:
                    create_topic(topic)
                baseline.append(
                    _drain(
                        f"passthrough-{rid}-{batch}",
                        [sys.executable, "-m", "bench.passthrough", "--source", raw,
                         "--target", passed, "--group", f"bench-pass-{rid}-{batch}",
                         "--count", str(count), "--batch", str(batch)],
                        {},
                        passed,
                        count,
                        log_dir,
                    )
                )  # fmt: skip
                env = {
                    "PROCESSOR_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                    "PROCESSOR_RAW_TOPIC": raw,
                    "PROCESSOR_DECODED_TOPIC": decoded,
                    "PROCESSOR_DEAD_LETTER_TOPIC": f"{decoded}_dlq",
                    "PROCESSOR_DATABASE_URL": DATABASE_URL,
                    "PROCESSOR_GROUP_ID": f"bench-processor-{rid}-{batch}",
                    "PROCESSOR_METRICS_PORT": str(free_port()),
                    "PROCESSOR_BATCH_SIZE": str(batch),
                    "PROCESSOR_LOG_LEVEL": "WARNING",
                }
                rates[batch] = _drain(
                    f"processor-{rid}-{batch}",
                    ["devicefleet-processor"],
                    env,
                    decoded,
                    count,
                    log_dir,
                )
                details.append(
                    {
                        "batch (consume size)": batch,
                        "processor msgs/s": round(rates[batch]),
                        "pass-through msgs/s": round(baseline[-1]),
                        "ratio": round(rates[batch] / baseline[-1], 2),
                    }
                )
    finally:
        delete_topics(*topics)
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute("DELETE FROM device_parameters WHERE fleet = %s", (fleet.name,))
    subject = rates[500]
    base = baseline[batch_sizes.index(500)]
    return Result(
        key=KEY,
        title="Processor: decode + enrich msgs/s vs a Kafka pass-through",
        subject=Measure("processor (decode, registry enrich, health model)", subject, "msgs/s"),
        baselines=[
            Measure("confluent-kafka pass-through, same ack-then-commit loop", base, "msgs/s")
        ],
        goal=f"≥ {GOAL}× pass-through",
        met=subject / base >= GOAL,
        command="make bench ONLY=P3",
        setup=(
            f"{count:,} raw records of {len(fleet.all_device_ids())} registered devices "
            f"(trucks, F2, generic) pre-filled in a 3-partition topic; subject and baseline "
            f"pinned to CPU {SUBJECT_CPUS}, Kafka and PostgreSQL to CPU {LOAD_CPUS}"
        ),
        details=details,
    )
