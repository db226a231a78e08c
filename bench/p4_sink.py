"""P4: sink rows/s into PostgreSQL vs ``psql \\copy`` of the same rows.

The decoded topic is filled first, then the sink (a real process, its own consumer group)
drains it: rows/s from its ``sink_rows_total{outcome="inserted"}`` counter, first row to
last. The baseline COPYs exactly the rows the sink writes, from a CSV file, with psql into
the same table. Both start from the same state: the rows are deleted (and the table
vacuumed) between runs. The sink does more than COPY: a staging table, ``ON CONFLICT DO
NOTHING`` on the unique key and the hourly rollup in the same transaction.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import time
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
    counter_value,
    create_topic,
    delete_topics,
    fill_topic,
    pin_stack,
    pinned,
    rate_until,
    run_id,
)
from bench.workload import Fleet, decoded_record, readings
from devicefleet_common.schemas import DecodedRecord
from devicefleet_sink.rows import COLUMNS, days_of, record_rows
from tests.support import ServiceProcess, free_port

KEY = "P4"
GOAL = 0.8


def _write_csv(path: Path, rows: list[tuple[Any, ...]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])


def _clean(conn: psycopg.Connection[Any], devices: list[str]) -> None:
    conn.execute("DELETE FROM iot_measurements WHERE device_id = ANY(%s)", (devices,))
    conn.execute("DELETE FROM iot_hourly_stats WHERE device_id = ANY(%s)", (devices,))
    conn.execute("VACUUM iot_measurements")
    conn.execute("VACUUM iot_hourly_stats")


def _copy_baseline(csv_path: Path, expected: int) -> float:
    """Seconds psql takes to COPY the file into iot_measurements (the client's wall time)."""
    columns = ", ".join(COLUMNS)
    psql = shutil.which("psql") or "psql"
    command = f"\\copy iot_measurements ({columns}) FROM '{csv_path}' WITH (FORMAT csv)"
    started = time.perf_counter()
    out = subprocess.run(
        pinned([psql, DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-c", command], SUBJECT_CPUS),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    assert out.stdout.strip() == f"COPY {expected}", out.stdout
    return seconds


def _sink_run(topic: str, expected: int, batch_size: int, log_dir: Path) -> float:
    """Rows/s of a fresh sink draining the topic."""
    port = free_port()
    rid = run_id()
    env = {
        "SINK_KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "SINK_DECODED_TOPIC": topic,
        "SINK_DEAD_LETTER_TOPIC": f"{topic}_dlq",
        "SINK_DATABASE_URL": DATABASE_URL,
        "SINK_GROUP_ID": f"bench-sink-{rid}",
        "SINK_METRICS_PORT": str(port),
        "SINK_BATCH_SIZE": str(batch_size),
        "SINK_LOG_LEVEL": "WARNING",
    }
    sink = ServiceProcess(
        f"sink-{rid}",
        pinned(["devicefleet-sink"], SUBJECT_CPUS),
        env,
        log_dir,
        health_url=f"http://127.0.0.1:{port}/metrics",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        rate = rate_until(
            lambda: counter_value(url, "sink_rows", {"outcome": "inserted"}),
            expected,
            timeout=600,
            interval=0.1,
            alive=sink.alive,
        )
    finally:
        sink.stop()
    return rate.per_second


def run(quick: bool, log_dir: Path) -> Result:
    records_count = 5_000 if quick else 50_000
    batch_sizes = [1000] if quick else [100, 500, 1000, 5000]
    fleet = Fleet(f"bench-{run_id()}", 50)
    devices = fleet.all_device_ids()
    records = [decoded_record(m, fleet) for m in readings(fleet, records_count)]
    rows = [
        row for _, value in records for row in record_rows(DecodedRecord.model_validate_json(value))
    ]
    topic = f"bench_decoded_{run_id()}"
    create_topic(topic)
    details: list[dict[str, Any]] = []
    try:
        fill_topic(topic, records)
        # Pinned first: backends forked from here on (the sink's, psql's) inherit it.
        with (
            pin_stack(LOAD_CPUS, "postgres", "kafka"),
            psycopg.connect(DATABASE_URL, autocommit=True) as conn,
            tempfile.TemporaryDirectory() as scratch,
        ):
            for day in sorted(days_of(rows)):
                conn.execute("SELECT devicefleet_ensure_partition(%s)", (day,))
            csv_path = Path(scratch) / "rows.csv"
            _write_csv(csv_path, rows)
            _clean(conn, devices)
            copy_rates = []
            sink_rates: dict[int, float] = {}
            for batch_size in batch_sizes:
                seconds = _copy_baseline(csv_path, len(rows))
                copy_rates.append(len(rows) / seconds)
                _clean(conn, devices)
                sink_rates[batch_size] = _sink_run(topic, len(rows), batch_size, log_dir)
                stored = conn.execute(
                    "SELECT count(*) FROM iot_measurements WHERE device_id = ANY(%s)", (devices,)
                ).fetchone()
                assert stored is not None
                assert stored[0] == len(rows), f"{stored[0]} rows stored, {len(rows)} expected"
                _clean(conn, devices)
                details.append(
                    {
                        "sink batch size": batch_size,
                        "sink rows/s": round(sink_rates[batch_size]),
                        "psql \\copy rows/s": round(copy_rates[-1]),
                        "ratio": round(sink_rates[batch_size] / copy_rates[-1], 2),
                    }
                )
    finally:
        delete_topics(topic)
    default = 1000
    copy_rate = sorted(copy_rates)[len(copy_rates) // 2]
    subject = sink_rates[default]
    return Result(
        key=KEY,
        title="Sink: rows/s into PostgreSQL vs psql \\copy",
        subject=Measure("sink (batch 1000, idempotent merge + hourly rollup)", subject, "rows/s"),
        baselines=[Measure("psql \\copy of the same rows", copy_rate, "rows/s")],
        goal=f"≥ {GOAL}× psql \\copy",
        met=subject / copy_rate >= GOAL,
        command="make bench ONLY=P4",
        setup=(
            f"{records_count:,} decoded records ({len(rows):,} rows) of {len(devices)} devices "
            f"pre-filled in a 3-partition topic; the sink and psql pinned to CPU {SUBJECT_CPUS}, "
            f"PostgreSQL to CPU {LOAD_CPUS}; rows deleted and tables vacuumed between runs"
        ),
        details=details,
    )
