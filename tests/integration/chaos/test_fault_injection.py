"""Seed 002's fault injection at its defaults, over a long run: 15 % of readings dropped,
20 % delayed by up to 2 s, 10 % sent twice, and ingest answering 10 % of requests with an
injected 503. No message may be stored twice, and every gap in a device's stored sequence
numbers must be a drop the simulator counted in its ledger."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devicefleet_simulator.ledger import read_ledger
from tests.integration.chaos.harness import (
    DEVICES_PER_STREAM,
    chaos_pipeline,
    message_sequence,
    stored_ids,
)
from tests.integration.chaos.report import write_section

pytestmark = pytest.mark.chaos

READINGS_PER_DEVICE = 600  # one minute at 10 readings/s: 7,200 readings over four streams
SEED_002_DEFAULTS = {
    "drop_rate": 0.15,
    "jitter_rate": 0.20,
    "max_jitter": 2.0,
    "duplicate_rate": 0.10,
}


def test_faults_at_seed_002_defaults_store_each_message_once_and_every_gap_is_a_drop(
    db: psycopg.Connection[Any], tmp_path: Path, stack: dict[str, str]
) -> None:
    with chaos_pipeline(tmp_path, {"ingest": {"overload_rate": "0.1"}}) as chaos:
        chaos.start_traffic(READINGS_PER_DEVICE, **SEED_002_DEFAULTS)
        result = chaos.verdict("seed-002-defaults", "seed 002 faults at their defaults")
        rows = []
        for stream, summary in zip(chaos.streams, chaos.summaries, strict=True):
            entries = read_ledger(stream.ledger)
            fleet_ids = stored_ids(db, [stream.fleet])
            stored: dict[str, set[int]] = defaultdict(set)
            for message_id in fleet_ids:
                device, sequence = message_sequence(message_id)
                stored[device].add(sequence)
            dropped = {message_sequence(m) for m in entries.dropped}
            gaps = {
                (device, sequence)
                for device in stored
                for sequence in range(READINGS_PER_DEVICE)
                if sequence not in stored[device]
            }
            rows.append(
                {
                    "stream": stream.name,
                    "generated": summary["generated"],
                    "dropped (ledger)": len(entries.dropped),
                    "duplicate sends": summary["duplicated"],
                    "retries": summary["retries"],
                    "acknowledged": summary["acknowledged"],
                    "stored": len(fleet_ids),
                    "gaps": len(gaps),
                    "gaps that are drops": len(gaps & dropped),
                }
            )
            assert len(stored) == DEVICES_PER_STREAM, stream.name
            assert summary["generated"] == DEVICES_PER_STREAM * READINGS_PER_DEVICE
            assert summary["dropped"] == len(entries.dropped) > 0
            assert summary["duplicated"] > 0
            assert gaps == dropped, {
                "gap not dropped": sorted(gaps - dropped)[:5],
                "dropped yet stored": sorted(dropped - gaps)[:5],
            }
    assert result.lost == result.duplicated == result.unexpected == 0, result
    overloaded = result.ingest_outcomes.get("overloaded", 0)
    assert overloaded > 0, result  # the injected 503s happened, and were retried
    write_section(
        "fault-table",
        rows,
        f"Produced by `pytest -m chaos`: {READINGS_PER_DEVICE} readings per device, "
        f"{DEVICES_PER_STREAM} devices per stream; ingest answered {overloaded} of "
        f"{result.ingest_received} messages with an injected 503. Stored duplicates: "
        f"{result.duplicated}; lost acknowledged messages: {result.lost}.",
    )
