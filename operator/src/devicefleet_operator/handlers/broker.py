"""Register a fleet in the MQTT broker, and remove it (operator/broker.py does the work)."""

from __future__ import annotations

import functools
from pathlib import Path

import kopf
from prometheus_client import Counter

from devicefleet_common.credentials import mqtt_password
from devicefleet_common.logging import get_logger
from devicefleet_operator.broker import BrokerAdmin, BrokerError, register_fleet, unregister_fleet
from devicefleet_operator.builders import fleet_id
from devicefleet_operator.credentials import signing_keys
from devicefleet_operator.settings import Settings
from devicefleet_operator.spec import FleetSpec

log = get_logger("devicefleet.operator.broker")
BROKER_SYNCS = Counter(
    "devicefleet_operator_broker_syncs",
    "Fleet registrations in the MQTT broker by outcome",
    ["outcome"],
)
for _outcome in ("created", "updated", "unchanged", "removed", "error"):
    BROKER_SYNCS.labels(_outcome)


def broker_admin(config: Settings) -> BrokerAdmin:
    assert config.mqtt_admin_password_file is not None
    return _admin(
        config.mqtt_admin_host or config.mqtt_host,
        config.mqtt_admin_port or config.mqtt_port,
        config.mqtt_admin_username,
        config.mqtt_admin_password_file,
        config.mqtt_admin_tls_ca_file,
    )


@functools.cache
def _admin(host: str, port: int, user: str, password_file: Path, ca: Path | None) -> BrokerAdmin:
    """Read once per process; an unreadable file fails the first reconcile, loudly."""
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        raise kopf.PermanentError(f"cannot read the broker admin's password: {exc}") from exc
    return BrokerAdmin(host, port, user, password, ca)


def reconcile_broker(
    namespace: str, name: str, spec: FleetSpec, config: Settings, periodic: bool = False
) -> str:
    """The fleet's client and role in the broker, before its pods connect; "none" when the
    operator does not manage the broker. A fleet not on MQTT gets no broker identity.
    ``periodic``: the timer's check that the broker still has the fleet (restarted without
    its state, or edited by hand); the password is checked on real reconciles only."""
    if not config.manages_broker or (periodic and spec.transport != "mqtt"):
        return "none"
    fleet = fleet_id(namespace, name)
    admin = broker_admin(config)
    try:
        if spec.transport != "mqtt":
            unregister_fleet(admin, fleet)
            outcome = "removed"
        else:
            key = signing_keys(config).mqtt_password
            assert key is not None  # Settings requires the key with the admin
            outcome = register_fleet(
                admin,
                fleet,
                mqtt_password(key, fleet),
                spec.profile,
                spec.devices,
                check_password=not periodic,
            )
    except BrokerError as exc:
        BROKER_SYNCS.labels("error").inc()
        raise kopf.TemporaryError(
            f"registering the fleet in the MQTT broker: {exc}", delay=10
        ) from exc
    BROKER_SYNCS.labels(outcome).inc()
    if not periodic:
        log.info("fleet in mqtt broker", fleet=fleet, outcome=outcome, devices=spec.devices)
    elif outcome != "unchanged":
        log.warning("fleet restored in mqtt broker", fleet=fleet, outcome=outcome)
    return outcome


def release_broker(namespace: str, name: str, config: Settings) -> None:
    """The deleted fleet's client (disconnected, its password refused from now on) and roles."""
    if not config.manages_broker:
        return
    fleet = fleet_id(namespace, name)
    try:
        unregister_fleet(broker_admin(config), fleet)
    except BrokerError as exc:
        BROKER_SYNCS.labels("error").inc()
        raise kopf.TemporaryError(
            f"removing the fleet from the MQTT broker: {exc}", delay=10
        ) from exc
    BROKER_SYNCS.labels("removed").inc()
    log.info("fleet removed from mqtt broker", fleet=fleet)
