"""Authentication and TLS of DeviceFleet's MQTT clients (simulator, bridge), from
``MqttSettings``. paho-free (common does not depend on it): the client is anything with
paho's ``username_pw_set`` and ``tls_set``."""

from __future__ import annotations

from typing import Protocol

from devicefleet_common.settings import MqttSettings

# CONNACK reason codes (MQTT v5) that no retry fixes: the credentials or the ACLs are wrong.
# A client keeps retrying (an operator may be registering the fleet right now) but says so
# loudly each time: a log line with the reason and a refused-connect counter.
REFUSED_CONNACK = frozenset({0x84, 0x85, 0x86, 0x87, 0x8C})


class _ConfigurableClient(Protocol):
    def username_pw_set(self, username: str | None, password: str | None = None) -> None: ...

    def tls_set(
        self,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None: ...


def uses_tls(settings: MqttSettings) -> bool:
    return settings.mqtt_tls or settings.mqtt_tls_ca_file is not None


def configure_client(client: _ConfigurableClient, settings: MqttSettings) -> None:
    """Username/password when a username is set; TLS (server cert and host name checked,
    against ``mqtt_tls_ca_file`` or the system CAs) when asked for."""
    if settings.mqtt_username:
        password = settings.mqtt_password
        client.username_pw_set(
            settings.mqtt_username, password.get_secret_value() if password else None
        )
    if uses_tls(settings):
        client.tls_set(
            ca_certs=_path(settings.mqtt_tls_ca_file),
            certfile=_path(settings.mqtt_tls_cert_file),
            keyfile=_path(settings.mqtt_tls_key_file),
        )


def broker_label(settings: MqttSettings) -> str:
    """host:port and how the client connects, for log lines (never the password)."""
    scheme = "mqtts" if uses_tls(settings) else "mqtt"
    user = f"{settings.mqtt_username}@" if settings.mqtt_username else ""
    return f"{scheme}://{user}{settings.mqtt_host}:{settings.mqtt_port}"


def _path(value: object) -> str | None:
    return None if value is None else str(value)
