"""The chaos suite: break each part of the pipeline for real under a steady stream, one at a
time and then together, and prove nothing acknowledged was lost or stored twice.

Run alone with ``uv run pytest -m chaos`` (needs the local stack). It writes the table in
docs/reliability.md when every scenario ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.chaos.harness import Chaos, ScenarioResult, chaos_pipeline
from tests.integration.chaos.report import write_chaos_table

pytestmark = pytest.mark.chaos

SERVICES = ("ingest", "bridge", "processor", "sink")
COMPONENTS = ("kafka", "mosquitto", "postgres")
OUTAGE = 6.0  # seconds a killed service or a stopped component stays down
# Longer than the consumer groups' session timeout (15 s) and 1.5 x the bridge's MQTT
# keepalive (4 s): the group evicts the member, the broker drops the connection.
PAUSE = 20.0


def kill_and_restart(*services: str) -> Callable[[Chaos], None]:
    def fault(chaos: Chaos) -> None:
        for service in services:
            chaos.kill(service)
        time.sleep(OUTAGE)
        for service in services:
            chaos.start(service)

    return fault


def restart_component(component: str) -> Callable[[Chaos], None]:
    def fault(chaos: Chaos) -> None:
        chaos.stop_component(component)
        time.sleep(OUTAGE)
        chaos.start_component(component)

    return fault


def pause(service: str) -> Callable[[Chaos], None]:
    def fault(chaos: Chaos) -> None:
        chaos.pause(service)
        time.sleep(PAUSE)
        chaos.resume(service)

    return fault


def everything_down(chaos: Chaos) -> None:
    for service in SERVICES:
        chaos.kill(service)
    chaos.stop_component(*COMPONENTS)
    time.sleep(OUTAGE)
    chaos.start_component(*COMPONENTS)
    for service in SERVICES:
        chaos.start(service)


def overlapping(chaos: Chaos) -> None:
    """Faults that overlap: the processor stalls past its session while Kafka goes away and
    the sink crashes; then the bridge crashes while Mosquitto restarts."""
    chaos.pause("processor")
    chaos.stop_component("kafka")
    chaos.kill("sink")
    time.sleep(OUTAGE)
    chaos.start_component("kafka")
    chaos.start("sink")
    time.sleep(PAUSE - OUTAGE)
    chaos.resume("processor")
    chaos.kill("bridge")
    chaos.stop_component("mosquitto")
    time.sleep(OUTAGE)
    chaos.start_component("mosquitto")
    chaos.start("bridge")


# name -> (what the fault is, the fault, readings per device: the stream outlives the fault)
SCENARIOS: dict[str, tuple[str, Callable[[Chaos], None], int]] = {
    "kill-ingest": ("SIGKILL ingest, restart after 6 s", kill_and_restart("ingest"), 200),
    "kill-bridge": ("SIGKILL the MQTT bridge, restart after 6 s", kill_and_restart("bridge"), 200),
    "kill-processor": (
        "SIGKILL the processor, restart after 6 s",
        kill_and_restart("processor"),
        200,
    ),
    "kill-sink": ("SIGKILL the sink, restart after 6 s", kill_and_restart("sink"), 200),
    "restart-kafka": ("Kafka stopped for 6 s, then started", restart_component("kafka"), 200),
    "restart-mosquitto": (
        "Mosquitto stopped for 6 s, then started",
        restart_component("mosquitto"),
        200,
    ),
    "restart-postgres": (
        "PostgreSQL stopped for 6 s, then started",
        restart_component("postgres"),
        200,
    ),
    "pause-processor": (
        "SIGSTOP the processor for 20 s (past its 15 s group session), then SIGCONT",
        pause("processor"),
        300,
    ),
    "pause-sink": (
        "SIGSTOP the sink for 20 s (past its 15 s group session), then SIGCONT",
        pause("sink"),
        300,
    ),
    "pause-bridge": (
        "SIGSTOP the bridge for 20 s (past 1.5 x its 4 s MQTT keepalive), then SIGCONT",
        pause("bridge"),
        300,
    ),
    "kill-all-services": (
        "SIGKILL ingest, bridge, processor and sink at once, restart after 6 s",
        kill_and_restart(*SERVICES),
        200,
    ),
    "everything-down": (
        "SIGKILL all four services and stop Kafka, Mosquitto and PostgreSQL for 6 s",
        everything_down,
        200,
    ),
    "overlapping": (
        "processor SIGSTOPped 20 s while Kafka is down 6 s and the sink is SIGKILLed; then "
        "the bridge SIGKILLed while Mosquitto restarts",
        overlapping,
        400,
    ),
}


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, ScenarioResult]]:
    collected: dict[str, ScenarioResult] = {}
    yield collected
    if set(collected) == set(SCENARIOS):
        write_chaos_table(list(collected.values()))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_nothing_acknowledged_is_lost_or_stored_twice(
    scenario: str,
    tmp_path: Path,
    results: dict[str, ScenarioResult],
    stack: dict[str, str],
) -> None:
    description, fault, per_device = SCENARIOS[scenario]
    try:
        with chaos_pipeline(tmp_path) as chaos:
            chaos.start_traffic(per_device)
            chaos.wait_until_flowing()
            fault(chaos)
            result = chaos.verdict(scenario, description)
    finally:
        # A failed scenario must not leave the stack down for the next one.
        Chaos.start_component("postgres", "kafka", "mosquitto")
    results[scenario] = result
    print(result)  # in the log of a failed run: the numbers behind the verdict
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert result.unexpected == 0, result
    assert result.acknowledged > 0, result
