from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devicefleet_common.credentials import token_fleet
from devicefleet_operator.builders import build_statefulset
from devicefleet_operator.constants import CREDENTIALS_REVISION_ANNOTATION
from devicefleet_operator.credentials import (
    SigningKeys,
    build_secret,
    credentials_revision,
    signing_keys,
    simulator_mqtt_ca,
)
from devicefleet_operator.settings import Settings
from devicefleet_operator.spec import parse_spec

INGEST_KEY = b"i" * 32
MQTT_KEY = b"m" * 32
SPEC = parse_spec({"profile": "truck", "devices": 4})


def test_the_secret_holds_what_the_signing_keys_allow() -> None:
    both = build_secret("ns", "trucks", SigningKeys(INGEST_KEY, MQTT_KEY))
    assert both["metadata"]["name"] == "trucks-sim-credentials"
    data = both["stringData"]
    assert data["mqtt-username"] == "ns.trucks"
    assert token_fleet(INGEST_KEY, data["ingest-token"]) == "ns.trucks"
    only_ingest = build_secret("ns", "trucks", SigningKeys(ingest_token=INGEST_KEY))
    assert set(only_ingest["stringData"]) == {"ingest-token"}


def test_pods_get_credentials_by_reference_only() -> None:
    keys = SigningKeys(INGEST_KEY, MQTT_KEY).credential_keys()
    sts = build_statefulset("ns", "trucks", SPEC, Settings(), keys)
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    refs = {
        name: e["valueFrom"]["secretKeyRef"]
        for name, e in env.items()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "SIMULATOR_MQTT_USERNAME": {"name": "trucks-sim-credentials", "key": "mqtt-username"},
        "SIMULATOR_MQTT_PASSWORD": {"name": "trucks-sim-credentials", "key": "mqtt-password"},
        "SIMULATOR_INGEST_TOKEN": {"name": "trucks-sim-credentials", "key": "ingest-token"},
    }
    secret = build_secret("ns", "trucks", SigningKeys(INGEST_KEY, MQTT_KEY))
    rendered = json.dumps(sts)
    assert secret["stringData"]["ingest-token"] not in rendered
    assert secret["stringData"]["mqtt-password"] not in rendered


def test_without_keys_nothing_changes() -> None:
    plain = build_statefulset("ns", "trucks", SPEC, Settings())
    assert plain == build_statefulset(
        "ns", "trucks", SPEC, Settings(), SigningKeys().credential_keys()
    )


def test_a_rotated_key_or_ca_rolls_the_fleets_pods() -> None:
    """Env from secretKeyRef is read at a container's start: new credentials need new pods."""

    def template(secret: dict[str, Any]) -> dict[str, Any]:
        keys = ("ingest-token", "mqtt-username", "mqtt-password")
        sts = build_statefulset(
            "ns",
            "trucks",
            SPEC,
            Settings(),
            keys,
            credentials_revision=credentials_revision(secret),
        )
        return sts["spec"]["template"]

    current = build_secret("ns", "trucks", SigningKeys(INGEST_KEY, MQTT_KEY))
    revision = template(current)["metadata"]["annotations"][CREDENTIALS_REVISION_ANNOTATION]
    # Same keys, same template: a reconcile alone never restarts a pod.
    assert template(build_secret("ns", "trucks", SigningKeys(INGEST_KEY, MQTT_KEY))) == template(
        current
    )
    rotated = [
        SigningKeys(b"j" * 32, MQTT_KEY),
        SigningKeys(INGEST_KEY, b"n" * 32),
    ]
    revisions = {revision}
    for keys in rotated:
        revisions.add(credentials_revision(build_secret("ns", "trucks", keys)))
    revisions.add(
        credentials_revision(build_secret("ns", "trucks", SigningKeys(INGEST_KEY, MQTT_KEY), CA))
    )
    assert len(revisions) == 4
    # Each fleet has its own credentials, so its own revision.
    assert (
        credentials_revision(build_secret("ns", "loaders", SigningKeys(INGEST_KEY, MQTT_KEY)))
        not in revisions
    )
    # A digest, not the credentials.
    assert all(value not in revision for value in current["stringData"].values())


def test_signing_keys_come_from_the_configured_files(tmp_path: Path) -> None:
    (tmp_path / "ingest").write_bytes(INGEST_KEY)
    config = Settings(ingest_token_key_file=tmp_path / "ingest")
    assert signing_keys(config) == SigningKeys(ingest_token=INGEST_KEY)


CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_brokers_ca_reaches_pods_as_a_file_from_the_fleets_secret() -> None:
    secret = build_secret("ns", "trucks", SigningKeys(mqtt_password=MQTT_KEY), mqtt_ca=CA)
    assert secret["stringData"]["mqtt-ca.crt"] == CA
    sts = build_statefulset("ns", "trucks", SPEC, Settings(), ("mqtt-password",), mqtt_ca=True)
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SIMULATOR_MQTT_TLS_CA_FILE"] == "/etc/devicefleet/mqtt-ca/ca.crt"
    assert container["volumeMounts"] == [
        {"name": "mqtt-ca", "mountPath": "/etc/devicefleet/mqtt-ca", "readOnly": True}
    ]
    assert pod["volumes"] == [
        {
            "name": "mqtt-ca",
            "secret": {
                "secretName": "trucks-sim-credentials",
                "items": [{"key": "mqtt-ca.crt", "path": "ca.crt"}],
            },
        }
    ]
    # Without it, no TLS setting, volume or mount at all (and so no rollout of older fleets).
    plain = build_statefulset("ns", "trucks", SPEC, Settings(), ("mqtt-password",))
    assert "volumes" not in plain["spec"]["template"]["spec"]
    assert "SIMULATOR_MQTT_TLS_CA_FILE" not in json.dumps(plain)


def test_the_ca_file_is_read_once_and_must_be_pem(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text(CA)
    assert simulator_mqtt_ca(Settings(simulator_mqtt_tls_ca_file=tmp_path / "ca.crt")) == CA
    assert simulator_mqtt_ca(Settings()) is None
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        simulator_mqtt_ca(Settings(simulator_mqtt_tls_ca_file=tmp_path / "key.pem"))
    with pytest.raises(ValueError, match="cannot read"):
        simulator_mqtt_ca(Settings(simulator_mqtt_tls_ca_file=tmp_path / "missing"))
