"""The secured MQTT broker proves its denials (issue 6): a fleet cannot publish as another
fleet's devices, a wrong password or no password is refused, the TLS listener is only trusted
with the DeviceFleet CA. Real Mosquitto with the dynamic security plugin
(devstack/components/mosquitto-secure.sh); fleets registered by the operator's own code
(operator/broker.py), the subscriber is the bridge's user."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY

from devicefleet_common.credentials import mqtt_password
from devicefleet_common.devices import device_id
from devicefleet_common.resilience import PermanentError
from devicefleet_common.schemas import Profile
from devicefleet_common.settings import MqttSettings
from devicefleet_common.topics import SUBSCRIPTIONS, f2_topic, sensor_topic, truck_topic
from devicefleet_operator.broker import (
    execute,
    register_fleet,
    role_names,
    unregister_fleet,
)
from devicefleet_simulator.message import OutgoingMessage
from devicefleet_simulator.mqtt_transport import MqttTransport
from devicefleet_simulator.transport import Ack
from tests.integration.secure_mqtt import (
    AUTH_PORT,
    BRIDGE_USER,
    CA_FILE,
    NOT_AUTHORIZED,
    REFUSED_LOGIN,
    TLS_PORT,
    Client,
    SecureBroker,
    secure_broker,
)

RUN = uuid.uuid4().hex[:6]


def device_topic(profile: Profile, fleet: str, index: int) -> str:
    device = device_id(profile, fleet, index)
    if profile == "f2":
        return f2_topic(device, "rs485", "temperature")
    return truck_topic(device) if profile == "truck" else sensor_topic(device)


@pytest.fixture(scope="module")
def broker() -> SecureBroker:
    return secure_broker()


@pytest.fixture
def fleet_pair(broker: SecureBroker, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Two registered fleets (3 devices each, the profile of the test's parameter)."""
    profile = getattr(request, "param", "generic")
    fleets = (f"mqttsec-{RUN}-{uuid.uuid4().hex[:4]}.a", f"mqttsec-{RUN}-{uuid.uuid4().hex[:4]}.b")
    for fleet in fleets:
        password = mqtt_password(broker.fleet_key, fleet)
        assert register_fleet(broker.admin, fleet, password, profile, 3) == "created"
    yield fleets
    for fleet in fleets:
        unregister_fleet(broker.admin, fleet)


@pytest.fixture
def bridge(broker: SecureBroker) -> Iterator[Client]:
    """The bridge's user, subscribed to every device topic."""
    client = Client(BRIDGE_USER, broker.bridge_password)
    assert client.connect() == 0
    assert all(code < 0x80 for code in client.subscribe(*SUBSCRIPTIONS))
    yield client
    client.close()


def connected(broker: SecureBroker, fleet: str, **kwargs: Any) -> Client:
    client = Client(fleet, mqtt_password(broker.fleet_key, fleet), **kwargs)
    assert client.connect() == 0, f"{fleet} was refused"
    return client


@pytest.mark.parametrize("fleet_pair", ["generic", "truck", "f2"], indirect=True)
def test_a_fleet_cannot_publish_as_another_fleets_device(
    broker: SecureBroker, fleet_pair: tuple[str, str], bridge: Client, request: Any
) -> None:
    """THE denial: fleet A, authenticated, publishing under fleet B's device topic gets PUBACK
    0x87 Not authorized and the bridge never sees the message; A's own topics pass."""
    profile = request.node.callspec.params["fleet_pair"]
    fleet_a, fleet_b = fleet_pair
    own, foreign = device_topic(profile, fleet_a, 1), device_topic(profile, fleet_b, 1)
    a = connected(broker, fleet_a)
    try:
        assert a.publish(foreign, b"forged") == NOT_AUTHORIZED
        assert a.publish(own, b"genuine") < 0x80
    finally:
        a.close()
    # The broker delivers A's publishes in order: once "genuine" is in, "forged" would be too.
    bridge.wait(lambda: (own, b"genuine") in bridge.received)
    assert (foreign, b"forged") not in bridge.received
    assert all(topic != foreign for topic, _ in bridge.received)


def test_with_mqtt_3_1_1_the_denied_publish_is_dropped_silently(
    broker: SecureBroker, fleet_pair: tuple[str, str], bridge: Client
) -> None:
    """MQTT 3.1.1 has no PUBACK reason codes: the broker acknowledges the forged publish and
    drops it. Still nothing reaches the subscriber (devices should speak v5 to learn it)."""
    fleet_a, fleet_b = fleet_pair
    own, foreign = device_topic("generic", fleet_a, 0), device_topic("generic", fleet_b, 0)
    a = connected(broker, fleet_a, protocol=mqtt.MQTTv311)
    try:
        assert a.publish(foreign, b"forged-v3") == 0
        assert a.publish(own, b"genuine-v3") == 0
    finally:
        a.close()
    bridge.wait(lambda: (own, b"genuine-v3") in bridge.received)
    assert (foreign, b"forged-v3") not in bridge.received


def test_a_fleet_publishes_only_its_devices_not_any_topic(
    broker: SecureBroker, fleet_pair: tuple[str, str]
) -> None:
    fleet_a, _ = fleet_pair
    a = connected(broker, fleet_a)
    try:
        assert a.publish(device_topic("generic", fleet_a, 0), b"x") < 0x80
        # Beyond its 3 devices, another profile's layout, or a topic of nobody's.
        assert a.publish(device_topic("generic", fleet_a, 3), b"x") == NOT_AUTHORIZED
        assert a.publish(device_topic("truck", fleet_a, 0), b"x") == NOT_AUTHORIZED
        assert a.publish("$CONTROL/dynamic-security/v1", b"{}") == NOT_AUTHORIZED
        assert a.publish(f"sensors/nobody-{RUN}", b"x") == NOT_AUTHORIZED
    finally:
        a.close()


def test_the_bridge_user_may_only_listen(broker: SecureBroker, fleet_pair: tuple[str, str]) -> None:
    client = Client(BRIDGE_USER, broker.bridge_password)
    assert client.connect() == 0
    try:
        assert client.publish(device_topic("generic", fleet_pair[0], 0), b"x") == NOT_AUTHORIZED
        assert client.subscribe("$CONTROL/#") == [NOT_AUTHORIZED]
    finally:
        client.close()


def test_wrong_or_missing_credentials_are_refused(
    broker: SecureBroker, fleet_pair: tuple[str, str]
) -> None:
    fleet_a, fleet_b = fleet_pair
    cases = {
        "another fleet's password": Client(fleet_a, mqtt_password(broker.fleet_key, fleet_b)),
        "a password under another key": Client(fleet_a, mqtt_password(b"k" * 32, fleet_a)),
        "no password": Client(fleet_a, None),
        "an unknown user": Client(f"nobody-{RUN}", "guess"),
    }
    for case, client in cases.items():
        try:
            assert client.connect() in REFUSED_LOGIN, case
        finally:
            client.close()


@pytest.mark.parametrize("port", [AUTH_PORT, TLS_PORT])
def test_anonymous_clients_are_refused(port: int) -> None:
    client = Client(None, None, port=port, ca_file=CA_FILE if port == TLS_PORT else None)
    try:
        assert client.connect() in REFUSED_LOGIN
    finally:
        client.close()


def test_tls_with_the_devicefleet_ca(
    broker: SecureBroker, fleet_pair: tuple[str, str], bridge: Client
) -> None:
    """The TLS listener works with the generated CA (host name 127.0.0.1 checked against the
    cert's SAN) and applies the same ACLs."""
    fleet_a, fleet_b = fleet_pair
    a = connected(broker, fleet_a, port=TLS_PORT, ca_file=CA_FILE)
    try:
        assert a.publish(device_topic("generic", fleet_b, 0), b"forged") == NOT_AUTHORIZED
        assert a.publish(device_topic("generic", fleet_a, 0), b"over-tls") < 0x80
    finally:
        a.close()
    bridge.wait(lambda: (device_topic("generic", fleet_a, 0), b"over-tls") in bridge.received)


def test_tls_without_trusting_the_ca_fails_the_handshake(
    broker: SecureBroker, fleet_pair: tuple[str, str]
) -> None:
    client = Client(fleet_pair[0], mqtt_password(broker.fleet_key, fleet_pair[0]), port=TLS_PORT)
    client._client.tls_set()  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect()
    # Plain MQTT to the TLS port gets no CONNACK either.
    plain = Client(fleet_pair[0], mqtt_password(broker.fleet_key, fleet_pair[0]), port=TLS_PORT)
    with pytest.raises((AssertionError, OSError)):
        plain.connect()
    plain.close()


def test_a_removed_fleet_is_disconnected_and_refused(broker: SecureBroker) -> None:
    fleet = f"mqttsec-{RUN}-gone.c"
    password = mqtt_password(broker.fleet_key, fleet)
    register_fleet(broker.admin, fleet, password, "generic", 2)
    client = connected(broker, fleet)
    try:
        unregister_fleet(broker.admin, fleet)
        client.wait(lambda: client.disconnects)
    finally:
        client.close()
    again = Client(fleet, password)
    try:
        assert again.connect() in REFUSED_LOGIN
    finally:
        again.close()
    roles = role_names(execute(broker.admin, [{"command": "listRoles"}])[0])
    assert not [role for role in roles if fleet in role]


def test_resizing_swaps_the_role_and_a_repeat_changes_nothing(broker: SecureBroker) -> None:
    fleet = f"mqttsec-{RUN}-grow.d"
    password = mqtt_password(broker.fleet_key, fleet)
    try:
        assert register_fleet(broker.admin, fleet, password, "generic", 2) == "created"
        client = connected(broker, fleet)
        try:
            # Reconciling an unchanged fleet must not disconnect its devices.
            assert register_fleet(broker.admin, fleet, password, "generic", 2) == "unchanged"
            assert client.publish(device_topic("generic", fleet, 1), b"x") < 0x80
            assert client.disconnects == []
            assert client.publish(device_topic("generic", fleet, 2), b"x") == NOT_AUTHORIZED
        finally:
            client.close()
        assert register_fleet(broker.admin, fleet, password, "generic", 3) == "updated"
        grown = connected(broker, fleet)
        try:
            assert grown.publish(device_topic("generic", fleet, 2), b"x") < 0x80
        finally:
            grown.close()
        roles = role_names(execute(broker.admin, [{"command": "listRoles"}])[0])
        assert len([role for role in roles if fleet in role]) == 1, roles
    finally:
        unregister_fleet(broker.admin, fleet)


def test_a_rotated_key_resets_the_password(broker: SecureBroker) -> None:
    fleet = f"mqttsec-{RUN}-rot.e"
    old, new = mqtt_password(b"o" * 32, fleet), mqtt_password(broker.fleet_key, fleet)
    try:
        register_fleet(broker.admin, fleet, old, "generic", 1)
        assert register_fleet(broker.admin, fleet, new, "generic", 1) == "updated"
        for password, accepted in ((new, True), (old, False)):
            session = Client(fleet, password)
            try:
                code = session.connect()
            finally:
                session.close()
            assert (code == 0) if accepted else (code in REFUSED_LOGIN)
    finally:
        unregister_fleet(broker.admin, fleet)


# --- the simulator's transport: the client side of the same rules -----------------------------


def message(topic: str) -> OutgoingMessage:
    return OutgoingMessage("d", 1, 0, topic, {"v": 1})


async def test_the_simulator_publishes_over_tls_and_gets_the_denial(
    broker: SecureBroker, fleet_pair: tuple[str, str]
) -> None:
    fleet_a, fleet_b = fleet_pair
    settings = MqttSettings(
        mqtt_username=fleet_a,
        mqtt_password=mqtt_password(broker.fleet_key, fleet_a),
        mqtt_tls_ca_file=CA_FILE,
    )
    transport = MqttTransport(
        "127.0.0.1", TLS_PORT, 30, f"sim-{uuid.uuid4().hex[:8]}", 10.0, connection=settings
    )
    await transport.start()
    try:
        assert transport.ready
        assert await transport.send(message(device_topic("generic", fleet_a, 0))) == Ack.ACCEPTED
        with pytest.raises(PermanentError) as refused:
            await transport.send(message(device_topic("generic", fleet_b, 0)))
        assert refused.value.status == NOT_AUTHORIZED
    finally:
        await transport.close()


async def test_the_simulator_says_when_its_credentials_are_refused(
    broker: SecureBroker, fleet_pair: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    def refusals() -> float:
        return sum(
            REGISTRY.get_sample_value("simulator_mqtt_connect_refused_total", {"reason": reason})
            or 0.0
            for reason in ("Not authorized", "Bad user name or password")
        )

    before = refusals()
    password = "not-the-password-" + RUN
    settings = MqttSettings(mqtt_username=fleet_pair[0], mqtt_password=password)
    transport = MqttTransport(
        "127.0.0.1", AUTH_PORT, 30, f"sim-{uuid.uuid4().hex[:8]}", 2.0, connection=settings
    )
    await transport.start()
    try:
        assert not transport.ready
        assert refusals() > before
    finally:
        await transport.close()
    logged = capsys.readouterr()
    out = logged.out + logged.err
    assert "mqtt connect refused" in out
    assert fleet_pair[0] in out
    assert password not in out
