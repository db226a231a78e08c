"""Real simulator processes through the whole pipeline: what a simulator reports as
acknowledged is exactly what the database holds, with seed 002's faults switched on."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devicefleet_common.schemas import Profile
from devicefleet_simulator.ledger import read_ledger
from devicefleet_simulator.mqtt_transport import MqttTransport
from tests.integration.conftest import MQTT_PORT, Pipeline, dead_letters, json_lines
from tests.support import ServiceProcess, free_port, wait_for


def simulator(
    pipeline: Pipeline,
    name: str,
    profile: Profile,
    transport: str,
    fleet: str,
    ledger: Path,
    ingest_url: str | None = None,
    **settings: Any,
) -> ServiceProcess:
    return pipeline.simulator(
        name, profile, transport, fleet, ingest_url, ledger_path=ledger, seed=7, **settings
    )


def ledger_ids(path: Path) -> tuple[set[str], set[str]]:
    """(acknowledged well-formed ids, acknowledged malformed ids)."""
    entries = read_ledger(path)
    return entries.acknowledged, entries.malformed


def stored_ids(db: psycopg.Connection[Any], fleet: str) -> set[str]:
    rows = db.execute(
        "SELECT DISTINCT message_id FROM iot_measurements WHERE attributes->>'fleet' = %s", (fleet,)
    ).fetchall()
    return {r[0] for r in rows}


def final_summary(process: ServiceProcess) -> dict[str, Any]:
    lines = [
        line for line in json_lines(process.logs()) if line.get("message") == "simulator stopped"
    ]
    assert lines, f"no final summary in the {process.name} log:\n{process.log_tail()}"
    return lines[-1]


@pytest.mark.parametrize(
    ("profile", "transport"),
    [
        ("f2", "mqtt"),
        ("truck", "http"),
        ("generic", "mqtt"),
        ("generic", "http"),
    ],
)
def test_acknowledged_messages_are_stored_exactly_once_under_faults(
    pipeline: Pipeline,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    profile: Profile,
    transport: str,
) -> None:
    fleet = pipeline.fleet(f"sim-{profile}-{transport}")
    devices, per_device = 5, 30
    pipeline.register(profile, fleet, devices)
    ledger = tmp_path / "ledger.txt"
    # Seed 002's drop/jitter/duplicate defaults, with shorter jitter to keep the test quick,
    # plus some malformed messages.
    sim = simulator(
        pipeline,
        f"sim-{profile}-{transport}",
        profile,
        transport,
        fleet,
        ledger,
        device_count=devices,
        max_messages_per_device=per_device,
        publish_interval=0.05,
        max_jitter=0.2,
        malformed_rate=0.05,
    ).start()
    assert sim.proc is not None
    assert sim.proc.wait(90) == 0, sim.log_tail()

    summary = final_summary(sim)
    assert summary["invariant_holds"] is True
    assert summary["generated"] == devices * per_device
    assert summary["dropped"] > 0
    assert summary["duplicated"] > 0
    assert summary["bufferOverflow"] == 0
    good, malformed = ledger_ids(ledger)
    assert len(good) + len(malformed) == summary["acknowledged"]
    wait_for(
        lambda: stored_ids(db, fleet) == good,
        60,
        message=f"the {len(good)} acknowledged messages of {fleet} in the database",
    )
    if transport == "mqtt" and malformed:
        # The broker accepted them; the processor must dead-letter them, not drop them.
        device = next(iter(malformed)).split(":")[0]
        assert dead_letters(pipeline, device)["dlq-stage"] == "processor"


def test_breaker_opens_while_ingest_is_down_and_buffered_messages_arrive_once(
    pipeline: Pipeline,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    private_ingest: ServiceProcess,
) -> None:
    fleet = pipeline.fleet("outage")
    pipeline.register("truck", fleet, 3)
    ingest = private_ingest
    ingest_url = (ingest.health_url or "").removesuffix("/health")
    ledger = tmp_path / "ledger.txt"
    sim = simulator(
        pipeline,
        "sim-outage",
        "truck",
        "http",
        fleet,
        ledger,
        ingest_url=ingest_url,
        device_count=3,
        # 15 msg/s: the buffer drains one request at a time (issue 9), and on a loaded 2-core
        # machine ~30 msg/s of new readings left almost no headroom to drain the backlog.
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
    ).start()
    status_url = (sim.health_url or "").replace("/health", "/status")

    def status() -> dict[str, Any]:
        return dict(httpx.get(status_url, timeout=2).json())

    try:
        wait_for(
            lambda: status()["messages"]["acknowledged"] >= 10,
            30,
            message="the simulator to deliver through ingest",
        )
        ingest.kill()
        opened = wait_for(
            lambda: (s := status())["circuitBreaker"]["state"] == "open" and s,
            10,
            message="the breaker to open within 10 s of ingest going down",
        )
        assert opened["ready"] is False
        wait_for(
            lambda: status()["messages"]["buffered"] >= 10,
            30,
            message="messages to be buffered while the breaker is open",
        )
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
    assert summary["buffered"] == 0
    assert summary["breaker_transitions"] >= 2  # closed → open → half-open → closed
    good, _ = ledger_ids(ledger)
    assert len(good) == summary["acknowledged"]
    wait_for(
        lambda: stored_ids(db, fleet) == good,
        60,
        message=f"all {len(good)} acknowledged messages, once each",
    )


async def test_mqtt_transport_connects_before_the_devices_start() -> None:
    """Publishing before the first CONNACK counted as failures and, on a loaded machine, opened
    the breaker at start-up; start() now waits for the connection."""
    transport = MqttTransport("127.0.0.1", int(MQTT_PORT), 30, f"t-{uuid.uuid4().hex}", 10.0)
    await transport.start()
    try:
        assert transport.ready
    finally:
        await transport.close()


async def test_mqtt_transport_start_is_bounded_when_the_broker_is_away() -> None:
    transport = MqttTransport("127.0.0.1", free_port(), 30, f"t-{uuid.uuid4().hex}", 0.5)
    started = time.monotonic()
    await transport.start()
    try:
        assert not transport.ready
        assert time.monotonic() - started < 5
    finally:
        await transport.close()
