"""A truck fleet's status counts its devices' fresh health predictions, read from the real
database, and `kubectl get -o wide` shows them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from kubernetes.client.exceptions import ApiException

from devicefleet_common.devices import fleet_device_ids
from devicefleet_operator.builders import fleet_id
from tests.integration.conftest import DATABASE_URL
from tests.integration.operator.conftest import (
    HEALTH_STALE_AFTER,
    create_fleet,
    kubectl,
    wait_status,
)


@pytest.fixture
def db() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        yield conn


def predict(db: psycopg.Connection[Any], fleet: str, device: str, state: str, age: float) -> None:
    """What the sink writes for a device's newest prediction."""
    db.execute(
        "INSERT INTO device_health (device_id, fleet, time, message_id, model_version, state)"
        " VALUES (%s, %s, %s, %s, 'truck-health-v1', %s)"
        " ON CONFLICT (device_id) DO UPDATE SET time = excluded.time, state = excluded.state",
        (device, fleet, datetime.now(UTC) - timedelta(seconds=age), f"{device}:1:0", state),
    )


def test_truck_fleet_status_counts_predicted_states(
    namespace: str, db: psycopg.Connection[Any]
) -> None:
    create_fleet(namespace, "haul", profile="truck", devices=5, devicesPerPod=5)
    fleet = fleet_id(namespace, "haul")
    devices = fleet_device_ids("truck", fleet, 0, 5)
    try:
        predict(db, fleet, devices[0], "degrading", age=2)
        predict(db, fleet, devices[1], "degrading", age=2)
        predict(db, fleet, devices[2], "critical", age=2)
        predict(db, fleet, devices[3], "normal", age=HEALTH_STALE_AFTER + 30)  # stale
        want = {"normal": 0, "degrading": 2, "critical": 1, "maintenance": 0, "unknown": 2}
        status = wait_status(
            namespace,
            "haul",
            lambda s: {k: (s.get("health") or {}).get(k) for k in want} == want,
            message=f"status.health == {want}",
        )["status"]
        assert status["health"]["modelVersion"] == "truck-health-v1"
        wide = kubectl("get", "devicefleet", "haul", "-n", namespace, "-o", "wide").stdout
        header, row = wide.splitlines()[:2]
        columns = dict(zip(header.split(), row.split(), strict=False))
        assert (columns["DEGRADING"], columns["CRITICAL"]) == ("2", "1")

        predict(db, fleet, devices[2], "maintenance", age=0)  # taken to the workshop
        wait_status(
            namespace,
            "haul",
            lambda s: (
                (s.get("health") or {}).get("critical") == 0 and s["health"].get("maintenance") == 1
            ),
            message="the repaired truck to leave the critical count",
        )
    finally:
        db.execute("DELETE FROM device_health WHERE fleet = %s", (fleet,))


def test_other_profiles_have_no_health(namespace: str) -> None:
    create_fleet(namespace, "doors", profile="f2", devices=2, devicesPerPod=2)
    status = wait_status(namespace, "doors", lambda s: s.get("phase"), message="a phase")
    assert "health" not in status["status"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"profile": "generic", "edge": {"enabled": True}}, "spec.edge.enabled needs profile"),
        ({"profile": "f2", "groundTruth": True}, "spec.groundTruth needs profile truck"),
    ],
)
def test_edge_and_ground_truth_are_refused_for_non_trucks(
    namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as err:
        create_fleet(namespace, "bad", **spec)
    assert err.value.status == 422
    assert message in str(err.value.body)
