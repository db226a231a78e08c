from __future__ import annotations

import json
from pathlib import Path

from devicefleet_common.credentials import token_fleet
from devicefleet_operator.builders import build_statefulset
from devicefleet_operator.credentials import SigningKeys, build_secret, signing_keys
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


def test_signing_keys_come_from_the_configured_files(tmp_path: Path) -> None:
    (tmp_path / "ingest").write_bytes(INGEST_KEY)
    config = Settings(ingest_token_key_file=tmp_path / "ingest")
    assert signing_keys(config) == SigningKeys(ingest_token=INGEST_KEY)
