"""The secured broker of the local stack (devstack/components/mosquitto-secure.sh) and a small
synchronous MQTT v5 client that reports what the broker answered (CONNACK and PUBACK reason
codes), for the security tests."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from paho.mqtt.enums import CallbackAPIVersion

from devicefleet_operator.broker import BrokerAdmin
from tests.support import PORTS, port_open, wait_for

STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
SECRETS = STATE / "conf/mosquitto-secure"
CA_FILE = STATE / "tls/ca.crt"
AUTH_PORT = int(PORTS["MQTT_AUTH_PORT"])
TLS_PORT = int(PORTS["MQTT_TLS_PORT"])
BRIDGE_USER = PORTS["MQTT_BRIDGE_USER"]
ADMIN_USER = PORTS["MQTT_ADMIN_USER"]

NOT_AUTHORIZED = 0x87
# A refused login: Mosquitto 2.0 answers 0x87 Not authorized to a wrong password (MQTT v5
# also allows 0x86 Bad user name or password).
REFUSED_LOGIN = frozenset({0x86, NOT_AUTHORIZED})


@dataclass(frozen=True)
class SecureBroker:
    admin: BrokerAdmin  # over TLS, as the operator would
    bridge_password: str
    fleet_key: bytes


def secure_broker() -> SecureBroker:
    """The secured broker is up and its generated credentials readable, else the test fails."""
    if not (port_open("127.0.0.1", AUTH_PORT) and port_open("127.0.0.1", TLS_PORT)):
        pytest.fail(
            f"the secured Mosquitto (127.0.0.1:{AUTH_PORT}, TLS :{TLS_PORT}) is not running; "
            "start it with `bash devstack/up.sh mosquitto-secure`",
            pytrace=False,
        )
    admin_password = (SECRETS / "admin.password").read_text().strip()
    return SecureBroker(
        admin=BrokerAdmin("127.0.0.1", TLS_PORT, ADMIN_USER, admin_password, CA_FILE),
        bridge_password=(SECRETS / "bridge.password").read_text().strip(),
        fleet_key=(SECRETS / "fleet-key").read_bytes().strip(),
    )


def secret_credentials(namespace: str, fleet: str) -> tuple[str, str]:
    """The fleet's MQTT credentials as its pods get them (read here as the cluster admin)."""

    def read() -> tuple[str, str] | None:
        try:
            data = client.CoreV1Api().read_namespaced_secret(f"{fleet}-sim-credentials", namespace)
        except ApiException as exc:
            if exc.status in (404, 500, 503):  # not written yet, or an apiserver restart
                return None
            raise
        values = {k: base64.b64decode(v).decode() for k, v in (data.data or {}).items()}
        return values["mqtt-username"], values["mqtt-password"]

    return wait_for(read, 30, message=f"the Secret {fleet}-sim-credentials")


class Client:
    """One MQTT v5 connection; every broker answer is kept for the test to check."""

    def __init__(
        self,
        username: str | None,
        password: str | None,
        port: int = AUTH_PORT,
        ca_file: Path | None = None,
        tls: bool = False,
        protocol: int = mqtt.MQTTv5,
        host: str = "127.0.0.1",
        check_hostname: bool = True,
    ) -> None:
        """``check_hostname`` False: the certificate chain is still verified (a broker reached
        by an IP its certificate does not name, the test having checked the name itself)."""
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sec-test-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls or ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file) if ca_file else None)
            self._client.tls_insecure_set(not check_hostname)
        self._host = host
        self._port = port
        self._cond = threading.Condition()
        self.connack: int | None = None
        self.disconnects: list[int] = []
        self.pubacks: dict[int, int] = {}
        self.received: list[tuple[str, bytes]] = []
        self.suback: list[int] | None = None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # paho's thread
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        with self._cond:
            self.connack = int(reason.value)
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        with self._cond:
            self.disconnects.append(int(reason.value))
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any = None) -> None:
        with self._cond:
            self.pubacks[mid] = int(reason.value)
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self._cond:
            self.received.append((message.topic, message.payload))
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, _m: int, codes: Any, _p: Any = None) -> None:
        with self._cond:
            self.suback = [int(c.value) for c in codes]
            self._cond.notify_all()

    def wait(self, check: Any, timeout: float = 10.0) -> Any:
        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for the broker")
            return check()

    # test thread
    def connect(self) -> int:
        """The CONNACK reason code (0 = accepted)."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        return int(self.wait(lambda: self.connack is not None and (self.connack,))[0])

    def subscribe(self, *topics: str) -> list[int]:
        self._client.subscribe([(topic, 1) for topic in topics])
        return list(self.wait(lambda: self.suback))

    def publish(self, topic: str, payload: bytes) -> int:
        """The PUBACK reason code (0x10 "no matching subscribers" is a success too)."""
        info = self._client.publish(topic, payload, qos=1)
        return int(self.wait(lambda: info.mid in self.pubacks and (self.pubacks[info.mid],))[0])

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
