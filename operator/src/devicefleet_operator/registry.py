"""A fleet's simulated devices in the pipeline's device registry.

The processor dead-letters readings of devices it does not know, so a fleet is useful only
once its devices are registered. The operator knows every device id (a pure function of the
fleet, see devicefleet_common.devices) and upserts them when a fleet is created or resized.
Optional: without ``OPERATOR_DATABASE_URL`` registration is left to others (the local
stack's kwok runner, or ``devicefleet-bootstrap register``).
"""

from __future__ import annotations

import kopf
import psycopg
from prometheus_client import Counter

from devicefleet_bootstrap.main import register_devices
from devicefleet_operator.builders import fleet_id
from devicefleet_operator.spec import FleetSpec

REGISTRATIONS = Counter(
    "devicefleet_operator_device_registrations_total",
    "Fleet device registrations in the device registry",
    ["outcome"],
)


def register_fleet_devices(database_url: str, namespace: str, name: str, spec: FleetSpec) -> int:
    """Upsert every device of the fleet (idempotent); a database error is retried by kopf."""
    try:
        count = register_devices(
            database_url, spec.profile, fleet_id(namespace, name), spec.devices, site=namespace
        )
    except psycopg.Error as exc:
        REGISTRATIONS.labels("error").inc()
        raise kopf.TemporaryError(
            f"registering devices failed: {type(exc).__name__}: {exc}", delay=10
        ) from exc
    REGISTRATIONS.labels("registered").inc()
    return count
