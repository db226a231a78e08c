"""Edge gateways and health predictions through the real pipeline: every acknowledged
reading is stored once, and so is the prediction made from the features that rode with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devicefleet_common.features import WINDOW
from devicefleet_ml import cli
from devicefleet_ml.evaluate import evaluate
from devicefleet_ml.report import from_database
from tests.integration.conftest import DATABASE_URL, Pipeline
from tests.integration.test_simulators import final_summary, ledger_ids, simulator, stored_ids
from tests.support import ServiceProcess, wait_for

STATES = {"normal", "degrading", "critical", "maintenance"}


def predictions(db: psycopg.Connection[Any], fleet: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT message_id, device_id, state, features_source, true_state, model_version,"
            " features FROM device_health_predictions WHERE fleet = %s",
            (fleet,),
        ).fetchall()


def sequence(message_id: str) -> int:
    return int(message_id.rsplit(":", 1)[1])


def check_predictions(
    db: psycopg.Connection[Any], fleet: str, good: set[str], source: str
) -> list[dict[str, Any]]:
    """Every stored reading with a full window behind it has exactly one prediction."""
    # The edge computes features for every reading it takes, dropped ones included, so each
    # delivered reading from the WINDOW-th on carries them.
    expected = {m for m in good if sequence(m) >= WINDOW - 1}
    rows = wait_for(
        lambda: (r := predictions(db, fleet)) and {p["message_id"] for p in r} == expected and r,
        60,
        message=f"{len(expected)} predictions of {fleet}",
    )
    assert len(rows) == len(expected)  # one each: replays and duplicate sends add nothing
    assert {p["features_source"] for p in rows} == {source}
    assert {p["state"] for p in rows} <= STATES
    assert all(p["true_state"] in STATES for p in rows)  # test mode: truth stored beside
    latest = dict(
        db.execute(
            "SELECT device_id, message_id FROM device_health WHERE fleet = %s", (fleet,)
        ).fetchall()
    )
    newest: dict[str, str] = {}
    for p in rows:
        if sequence(p["message_id"]) > sequence(newest.get(p["device_id"], "x:0:-1")):
            newest[p["device_id"]] = p["message_id"]
    assert latest == newest  # device_health holds each device's newest verdict
    return rows


@pytest.mark.parametrize("transport", ["http", "mqtt"])
def test_edge_readings_and_predictions_are_stored_exactly_once_under_faults(
    pipeline: Pipeline, db: psycopg.Connection[Any], tmp_path: Path, transport: str
) -> None:
    fleet = pipeline.fleet(f"edge-{transport}")
    devices, per_device = 4, 40
    pipeline.register("truck", fleet, devices)
    ledger = tmp_path / "ledger.txt"
    sim = simulator(
        pipeline,
        f"sim-edge-{transport}",
        "truck",
        transport,
        fleet,
        ledger,
        device_count=devices,
        max_messages_per_device=per_device,
        publish_interval=0.05,
        max_jitter=0.2,  # seed 002's drop/jitter/duplicate rates, shorter jitter
        edge=True,
        ground_truth=True,
    ).start()
    assert sim.proc is not None
    assert sim.proc.wait(90) == 0, sim.log_tail()
    summary = final_summary(sim)
    assert summary["invariant_holds"] is True
    assert summary["dropped"] > 0
    assert summary["duplicated"] > 0
    good, _ = ledger_ids(ledger)
    assert len(good) == summary["acknowledged"]
    wait_for(lambda: stored_ids(db, fleet) == good, 60, message=f"the readings of {fleet}")
    rows = check_predictions(db, fleet, good, source="edge")
    assert len(rows[0]["features"]) == 28
    if transport == "http":
        # The evaluation command scores a live run from the same table.
        out = tmp_path / "evaluation"
        args = ["evaluate", "--database", DATABASE_URL, "--fleet", fleet, "--out", str(out)]
        assert cli.main(args) == 0
        report = evaluate(from_database(DATABASE_URL, fleet))
        assert report.scored == len(rows)
        assert f"{len(rows):,}" in (out / "evaluation.md").read_text()


def test_processor_computes_features_for_trucks_without_an_edge(
    pipeline: Pipeline, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    fleet = pipeline.fleet("no-edge")
    pipeline.register("truck", fleet, 2)
    ledger = tmp_path / "ledger.txt"
    sim = simulator(
        pipeline, "sim-no-edge", "truck", "http", fleet, ledger, device_count=2,
        max_messages_per_device=25, publish_interval=0.05, drop_rate=0, jitter_rate=0,
        duplicate_rate=0, edge=False, ground_truth=True,
    ).start()  # fmt: skip
    assert sim.proc is not None
    assert sim.proc.wait(60) == 0, sim.log_tail()
    good, _ = ledger_ids(ledger)
    wait_for(lambda: stored_ids(db, fleet) == good, 60, message=f"the readings of {fleet}")
    # Nothing lost and in order per device: the processor's windows fill exactly like the
    # edge's would.
    check_predictions(db, fleet, good, source="processor")


def test_edge_buffers_readings_and_features_through_an_ingest_outage(
    pipeline: Pipeline,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    private_ingest: ServiceProcess,
) -> None:
    fleet = pipeline.fleet("edge-outage")
    pipeline.register("truck", fleet, 3)
    ingest = private_ingest
    ledger = tmp_path / "ledger.txt"
    sim = simulator(
        pipeline,
        "sim-edge-outage",
        "truck",
        "http",
        fleet,
        ledger,
        ingest_url=(ingest.health_url or "").removesuffix("/health"),
        device_count=3,
        publish_interval=0.2,
        drop_rate=0,
        jitter_rate=0,
        duplicate_rate=0,
        retry_max_attempts=2,
        retry_base=0.05,
        retry_max=0.2,
        breaker_fail_max=3,
        breaker_reset_timeout=1.0,
        request_timeout=1.0,
        edge=True,
        ground_truth=True,
    ).start()
    status_url = (sim.health_url or "").replace("/health", "/status")

    def status() -> dict[str, Any]:
        return dict(httpx.get(status_url, timeout=2).json())

    try:
        wait_for(lambda: status()["messages"]["acknowledged"] >= 40, 30,
                 message="the edge to sync through ingest")  # fmt: skip
        ingest.kill()
        wait_for(lambda: status()["circuitBreaker"]["state"] == "open", 10,
                 message="the breaker to open")  # fmt: skip
        wait_for(lambda: status()["messages"]["buffered"] >= 30, 30,
                 message="readings with their features to pile up in the buffer")  # fmt: skip
        ingest.start()
        wait_for(
            lambda: (
                (s := status())["circuitBreaker"]["state"] == "closed"
                and s["messages"]["buffered"] == 0
            ),
            30,
            message="the breaker to close and the buffer to drain",
        )
    finally:
        assert sim.stop() == 0, sim.log_tail()
    summary = final_summary(sim)
    assert summary["invariant_holds"] is True
    assert summary["bufferOverflow"] == 0
    good, _ = ledger_ids(ledger)
    assert len(good) == summary["acknowledged"]
    wait_for(lambda: stored_ids(db, fleet) == good, 60, message="every reading, once")
    check_predictions(db, fleet, good, source="edge")
