from __future__ import annotations

from pathlib import Path
from typing import Any

from devicefleet_common.mqtt import broker_label, configure_client
from devicefleet_common.settings import MqttSettings, redacted


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def username_pw_set(self, username: str | None, password: str | None = None) -> None:
        self.calls.append(("auth", (username, password)))

    def tls_set(
        self, ca_certs: str | None = None, certfile: str | None = None, keyfile: str | None = None
    ) -> None:
        self.calls.append(("tls", (ca_certs, certfile, keyfile)))


def test_anonymous_plain_by_default() -> None:
    client = RecordingClient()
    configure_client(client, MqttSettings())
    assert client.calls == []
    assert broker_label(MqttSettings()) == "mqtt://127.0.0.1:11883"


def test_credentials_and_tls_are_applied(tmp_path: Path) -> None:
    settings = MqttSettings(
        mqtt_username="ns.a",
        mqtt_password="s3cret",
        mqtt_tls_ca_file=tmp_path / "ca.crt",
        mqtt_port=18883,
    )
    client = RecordingClient()
    configure_client(client, settings)
    assert client.calls == [
        ("auth", ("ns.a", "s3cret")),
        ("tls", (f"{tmp_path}/ca.crt", None, None)),
    ]
    assert broker_label(settings) == "mqtts://ns.a@127.0.0.1:18883"


def test_tls_with_system_cas() -> None:
    client = RecordingClient()
    configure_client(client, MqttSettings(mqtt_tls=True))
    assert client.calls == [("tls", (None, None, None))]


def test_the_password_is_never_shown() -> None:
    settings = MqttSettings(mqtt_username="ns.a", mqtt_password="s3cret")
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(redacted(settings))
    assert "s3cret" not in broker_label(settings)
