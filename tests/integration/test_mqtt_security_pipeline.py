"""The whole pipeline on the secured broker: the bridge (its own user, over TLS) and simulator
processes (fleet credentials, over TLS). A fleet's acknowledged messages are stored exactly;
a simulator with fleet A's credentials posing as fleet B's devices gets every message refused
(PUBACK 0x87) and nothing of B is stored, although B's devices are registered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devicefleet_common.credentials import mqtt_password
from devicefleet_operator.broker import register_fleet, unregister_fleet
from tests.integration.conftest import Pipeline, running_pipeline
from tests.integration.secure_mqtt import (
    BRIDGE_USER,
    CA_FILE,
    TLS_PORT,
    SecureBroker,
    secure_broker,
)
from tests.integration.test_simulators import final_summary, ledger_ids, stored_ids
from tests.support import ServiceProcess, free_port, wait_for

DEVICES, PER_DEVICE = 3, 10


@pytest.fixture(scope="module")
def broker() -> SecureBroker:
    return secure_broker()


@pytest.fixture(scope="module")
def secure_pipeline(
    stack: dict[str, str], broker: SecureBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    bridge = {
        "mqtt_port": str(TLS_PORT),
        "mqtt_username": BRIDGE_USER,
        "mqtt_password": broker.bridge_password,
        "mqtt_tls_ca_file": str(CA_FILE),
    }
    run_id = f"sec{uuid.uuid4().hex[:6]}"
    with running_pipeline(
        run_id, tmp_path_factory.mktemp("secure-service-logs"), overrides={"bridge": bridge}
    ) as pipeline:
        yield pipeline


def fleet_simulator(
    pipeline: Pipeline, broker: SecureBroker, name: str, fleet: str, login: str, ledger: Path
) -> Any:
    return pipeline.simulator(
        name,
        "generic",
        "mqtt",
        fleet,
        mqtt_port=TLS_PORT,
        mqtt_username=login,
        mqtt_password=mqtt_password(broker.fleet_key, login),
        mqtt_tls_ca_file=CA_FILE,
        device_count=DEVICES,
        max_messages_per_device=PER_DEVICE,
        publish_interval=0.05,
        drop_rate=0,
        jitter_rate=0,
        duplicate_rate=0,
        retry_max_attempts=1,
        ledger_path=ledger,
        seed=7,
    )


def test_a_fleet_flows_and_a_forger_is_refused_end_to_end(
    secure_pipeline: Pipeline,
    broker: SecureBroker,
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    honest, victim = secure_pipeline.fleet("honest"), secure_pipeline.fleet("victim")
    for fleet in (honest, victim):
        register_fleet(
            broker.admin, fleet, mqtt_password(broker.fleet_key, fleet), "generic", DEVICES
        )
        secure_pipeline.register("generic", fleet, DEVICES)
    try:
        ledger = tmp_path / "honest.txt"
        good = fleet_simulator(secure_pipeline, broker, "sim-honest", honest, honest, ledger)
        # Simulates the victim's devices (their ids and topics) with the honest fleet's login.
        forged = fleet_simulator(
            secure_pipeline, broker, "sim-forger", victim, honest, tmp_path / "forged.txt"
        )
        good.start()
        forged.start()
        assert good.proc is not None
        assert forged.proc is not None
        assert good.proc.wait(90) == 0, good.log_tail()
        forged.proc.wait(90)

        summary = final_summary(good)
        assert summary["acknowledged"] == DEVICES * PER_DEVICE
        acknowledged, _ = ledger_ids(ledger)
        wait_for(
            lambda: stored_ids(db, honest) == acknowledged,
            60,
            message=f"the {len(acknowledged)} acknowledged messages of {honest}",
        )

        refused = final_summary(forged)
        assert refused["acknowledged"] == 0, refused
        assert refused["rejected"] == refused["generated"] == DEVICES * PER_DEVICE, refused
        password = mqtt_password(broker.fleet_key, honest)
        for process in (good, forged, secure_pipeline.services["bridge"]):
            assert password not in process.logs()
        assert broker.bridge_password not in secure_pipeline.services["bridge"].logs()
        # The honest fleet's messages went all the way through meanwhile: the forged ones
        # would have too, had the broker taken them.
        assert stored_ids(db, victim) == set()
    finally:
        for fleet in (honest, victim):
            unregister_fleet(broker.admin, fleet)


def test_a_bridge_refused_its_subscriptions_says_so_and_is_not_ready(
    secure_pipeline: Pipeline, broker: SecureBroker, tmp_path: Path
) -> None:
    """A bridge logged in as a fleet (which may only publish its own devices' topics) is
    connected but refused every subscription: it logs that, and ``bridge_mqtt_subscribed``
    stays 0 while ``bridge_mqtt_connected`` is 1, so readiness checks and alerts can tell."""
    fleet = secure_pipeline.fleet("not-a-bridge")
    register_fleet(broker.admin, fleet, mqtt_password(broker.fleet_key, fleet), "generic", 1)
    metrics_port = free_port()
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    impostor = ServiceProcess(
        "bridge-as-a-fleet",
        ["devicefleet-bridge"],
        secure_pipeline.env["bridge"]
        | {
            "BRIDGE_CLIENT_ID": f"impostor-{uuid.uuid4().hex[:8]}",
            "BRIDGE_METRICS_PORT": str(metrics_port),
            "BRIDGE_MQTT_USERNAME": fleet,
            "BRIDGE_MQTT_PASSWORD": mqtt_password(broker.fleet_key, fleet),
        },
        tmp_path,
        health_url=metrics,
    ).start()
    try:
        wait_for(
            lambda: "mqtt subscription refused" in impostor.logs(),
            30,
            message="the bridge logging its refused subscriptions",
        )
        text = httpx.get(metrics, timeout=5).text
        assert "\nbridge_mqtt_connected 1.0\n" in text
        assert "\nbridge_mqtt_subscribed 0.0\n" in text
        assert "Not authorized" in impostor.logs()
        ready = httpx.get(f"http://127.0.0.1:{metrics_port}/ready", timeout=5)
        assert ready.status_code == 503
        assert ready.text.startswith("the MQTT broker refused subscriptions:"), ready.text
    finally:
        impostor.stop()
        unregister_fleet(broker.admin, fleet)
