"""A fleet's credentials Secret: what its simulator pods authenticate with.

The values are derived from the operator's signing keys (devicefleet_common.credentials), so
the operator writes the Secret without ever reading Secrets (its RBAC has create and patch on
them, no get, list or watch), and the pods get them through ``secretKeyRef``: credentials are
never in a DeviceFleet spec, a pod spec or a log line.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devicefleet_common.credentials import ingest_token, load_key, mqtt_password
from devicefleet_operator.builders import credentials_secret_name, fleet_id, fleet_labels
from devicefleet_operator.constants import FIELD_MANAGER, MQTT_CA_KEY
from devicefleet_operator.settings import Settings


@dataclass(frozen=True)
class SigningKeys:
    ingest_token: bytes | None = None
    mqtt_password: bytes | None = None

    def credential_keys(self) -> tuple[str, ...]:
        """The keys a fleet's Secret has under these signing keys (see CREDENTIAL_ENV)."""
        mqtt = ("mqtt-username", "mqtt-password") if self.mqtt_password else ()
        return mqtt + (("ingest-token",) if self.ingest_token else ())


def signing_keys(config: Settings) -> SigningKeys:
    """Read once per process; a bad key file fails the operator's first reconcile, loudly."""
    return _read_keys(config.ingest_token_key_file, config.mqtt_password_key_file)


@functools.cache
def _read_keys(ingest_file: Path | None, mqtt_file: Path | None) -> SigningKeys:
    return SigningKeys(
        ingest_token=load_key(ingest_file) if ingest_file else None,
        mqtt_password=load_key(mqtt_file) if mqtt_file else None,
    )


def simulator_mqtt_ca(config: Settings) -> str | None:
    """The broker's CA for the fleets' pods (PEM text), or None: simulators without TLS."""
    path = config.simulator_mqtt_tls_ca_file
    return _read_ca(path) if path else None


@functools.cache
def _read_ca(path: Path) -> str:
    """Read once per process; not a PEM certificate fails the first reconcile, loudly."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the simulators' MQTT CA {path}: {exc}") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"the simulators' MQTT CA {path} holds no PEM certificate")
    return text


def fleet_credentials(namespace: str, name: str, config: Settings) -> dict[str, Any] | None:
    """The fleet's credentials Secret under this operator's settings; None when it has neither
    signing keys nor a CA for the fleets (the pods then get no Secret at all)."""
    keys = signing_keys(config)
    ca = simulator_mqtt_ca(config)
    if not keys.credential_keys() and ca is None:
        return None
    return build_secret(namespace, name, keys, ca)


def credentials_revision(secret: Mapping[str, Any]) -> str:
    """A digest of the Secret's values for the pods' template: it changes when a signing key
    or the CA is rotated, which rolls the pods onto the new values. One-way and truncated, it
    tells that the credentials changed, nothing of what they are."""
    data = json.dumps(secret["stringData"], sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def build_secret(
    namespace: str, name: str, keys: SigningKeys, mqtt_ca: str | None = None
) -> dict[str, Any]:
    """The fleet's credentials, and the broker's CA when its pods connect by TLS (a file
    they mount: public, but one object for the operator to keep in step)."""
    fleet = fleet_id(namespace, name)
    data: dict[str, str] = {}
    if mqtt_ca is not None:
        data[MQTT_CA_KEY] = mqtt_ca
    if keys.mqtt_password:
        data["mqtt-username"] = fleet
        data["mqtt-password"] = mqtt_password(keys.mqtt_password, fleet)
    if keys.ingest_token:
        data["ingest-token"] = ingest_token(keys.ingest_token, fleet)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": credentials_secret_name(name),
            "namespace": namespace,
            "labels": fleet_labels(name),
        },
        "type": "Opaque",
        "stringData": data,
    }


def apply_secret(core: client.CoreV1Api, secret: dict[str, Any]) -> str:
    """Create, or overwrite (a rotated key, a hand edit) without reading it first."""
    meta = secret["metadata"]
    try:
        core.create_namespaced_secret(meta["namespace"], secret, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
    else:
        return "created"
    core.patch_namespaced_secret(
        meta["name"], meta["namespace"], secret, field_manager=FIELD_MANAGER
    )
    return "updated"
