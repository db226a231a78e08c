"""The real operator registers each fleet in the secured broker (issue 6): the credentials it
writes into the fleet's Secret log in, publish the fleet's devices' topics and no other fleet's,
follow a resize, and stop working once the fleet is deleted.

Its own operator process (the session's one runs without broker credentials), with the
secured broker's admin over TLS and the devstack's fleet key, watching its own namespaces."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devicefleet_operator.broker import unregister_fleet
from devicefleet_operator.builders import fleet_id
from devicefleet_operator.constants import GROUP, PLURAL, VERSION
from tests.integration.operator.conftest import (
    create_fleet,
    delete_namespace,
    patch_fleet,
    start_operator,
    statefulset,
)
from tests.integration.secure_mqtt import (
    ADMIN_USER,
    CA_FILE,
    NOT_AUTHORIZED,
    REFUSED_LOGIN,
    SECRETS,
    TLS_PORT,
    Client,
    secret_credentials,
    secure_broker,
)
from tests.integration.test_mqtt_security import device_topic
from tests.support import ServiceProcess, free_port, wait_for

RUN = uuid.uuid4().hex[:6]
PATTERN = f"devicefleet-test-mqtt-{RUN}-*"  # not the session operator's devicefleet-test-<hex>-*
RESYNC_INTERVAL = 2.0


def run_operator(log_dir: Path, pattern: str, admin_port: int) -> ServiceProcess:
    """An operator managing the secured broker (its admin on ``admin_port``) for the fleets
    in namespaces matching ``pattern``."""
    return start_operator(
        "operator-mqtt",
        log_dir,
        [pattern],
        MQTT_HOST="127.0.0.1",
        MQTT_PORT=str(TLS_PORT),
        MQTT_PASSWORD_KEY_FILE=str(SECRETS / "fleet-key"),
        MQTT_ADMIN_USERNAME=ADMIN_USER,
        MQTT_ADMIN_PASSWORD_FILE=str(SECRETS / "admin.password"),
        MQTT_ADMIN_PORT=str(admin_port),
        MQTT_ADMIN_TLS_CA_FILE=str(CA_FILE),
        # Fleets' pods by TLS too: the operator gives them this CA.
        SIMULATOR_MQTT_TLS_CA_FILE=str(CA_FILE),
        MQTT_ADMIN_RESYNC_INTERVAL=str(RESYNC_INTERVAL),
    )


@pytest.fixture(scope="module")
def broker_operator(
    cluster: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    secure_broker()  # up, else fail
    process = run_operator(tmp_path_factory.mktemp("operator-mqtt-logs"), PATTERN, TLS_PORT)
    yield process
    process.stop()


@pytest.fixture
def namespace(broker_operator: ServiceProcess) -> Iterator[str]:
    name = PATTERN.replace("*", uuid.uuid4().hex[:6])
    create_namespace(name)
    yield name
    api = client.CustomObjectsApi()
    for item in api.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
        try:
            api.delete_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL, item["metadata"]["name"]
            )
        except ApiException as exc:
            if exc.status != 404:  # a deleted fleet the operator just let go
                raise
    delete_namespace(name)


def create_namespace(name: str) -> None:
    client.CoreV1Api().create_namespace(
        {"metadata": {"name": name, "labels": {"iot.devicefleet.io/kwok-runner": "disabled"}}}
    )


def login(username: str, password: str) -> int:
    session = Client(username, password)
    try:
        return session.connect()
    finally:
        session.close()


def publish(username: str, password: str, topic: str) -> int:
    session = Client(username, password)
    try:
        assert session.connect() == 0
        return session.publish(topic, b"x")
    finally:
        session.close()


def test_the_operator_registers_scopes_and_removes_a_fleet(
    broker_operator: ServiceProcess, namespace: str
) -> None:
    create_fleet(namespace, "sensors", profile="generic", devices=3)
    create_fleet(namespace, "trucks", profile="truck", devices=2)
    user, password = secret_credentials(namespace, "sensors")
    sensors, trucks = fleet_id(namespace, "sensors"), fleet_id(namespace, "trucks")
    assert user == sensors
    wait_for(lambda: login(user, password) == 0, 30, message="the fleet's login to work")

    # Its devices' topics, and no other fleet's (nor beyond its size).
    assert publish(user, password, device_topic("generic", sensors, 2)) < 0x80
    assert publish(user, password, device_topic("truck", trucks, 0)) == NOT_AUTHORIZED
    assert publish(user, password, device_topic("generic", sensors, 3)) == NOT_AUTHORIZED
    truck_user, truck_password = secret_credentials(namespace, "trucks")
    wait_for(lambda: login(truck_user, truck_password) == 0, 30, message="the trucks' login")
    assert publish(truck_user, truck_password, device_topic("generic", sensors, 0)) == (
        NOT_AUTHORIZED
    )

    # The periodic check leaves a registered fleet alone (no disconnect)...
    device = Client(user, password)
    assert device.connect() == 0
    try:
        time.sleep(3 * RESYNC_INTERVAL)
        assert device.disconnects == []
    finally:
        device.close()

    # ...and puts back a fleet the broker forgot (as after a restart without its state).
    # (Counted: on a busy machine the first check can come before the first reconcile has
    # registered the fleet, and finds it missing too.)
    def restored() -> int:
        return broker_operator.logs().count("fleet restored in mqtt broker")

    before = restored()
    unregister_fleet(secure_broker().admin, sensors)
    wait_for(lambda: restored() > before, 30, message="the operator to restore the fleet")
    assert login(user, password) == 0

    # A resize follows: the fourth device may publish once the operator has reconciled.
    patch_fleet(namespace, "sensors", {"devices": 4})
    wait_for(
        lambda: publish(user, password, device_topic("generic", sensors, 3)) < 0x80,
        30,
        message="the resized fleet's 4th device to be allowed",
    )

    # Deleted: the operator's finalizer removes it from the broker, then the fleet goes.
    client.CustomObjectsApi().delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "sensors"
    )
    wait_for(lambda: login(user, password) in REFUSED_LOGIN, 30, message="the credentials to stop")
    assert login(truck_user, truck_password) == 0  # the other fleet is untouched

    # Never a credential in the operator's log.
    logs = broker_operator.logs()
    assert "fleet in mqtt broker" in logs
    assert password not in logs
    assert truck_password not in logs
    assert (SECRETS / "admin.password").read_text().strip() not in logs


def test_fleets_pods_get_the_brokers_ca_and_connect_by_tls(
    broker_operator: ServiceProcess, namespace: str, tmp_path: Path
) -> None:
    """OPERATOR_SIMULATOR_MQTT_TLS_CA_FILE: the CA travels in the fleet's Secret, the pods
    mount it as SIMULATOR_MQTT_TLS_CA_FILE and point at the TLS listener; with exactly those
    (the CA read back from the Secret) the fleet's client verifies the broker, logs in and
    publishes its own device's topic over TLS."""
    create_fleet(namespace, "sensors", profile="generic", devices=2)
    sts = wait_for(lambda: statefulset(namespace, "sensors"), 30, message="sensors-sim")
    pod = sts.spec.template.spec
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["SIMULATOR_MQTT_PORT"] == str(TLS_PORT)
    ca_path = env["SIMULATOR_MQTT_TLS_CA_FILE"]
    [mount] = pod.containers[0].volume_mounts
    assert ca_path == f"{mount.mount_path}/ca.crt"
    [volume] = [v for v in pod.volumes if v.name == mount.name]
    assert volume.secret.secret_name == "sensors-sim-credentials"
    assert [(i.key, i.path) for i in volume.secret.items] == [("mqtt-ca.crt", "ca.crt")]

    user, password = secret_credentials(namespace, "sensors")
    data = client.CoreV1Api().read_namespaced_secret("sensors-sim-credentials", namespace).data
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(data["mqtt-ca.crt"]))
    assert ca.read_bytes() == CA_FILE.read_bytes()

    def publishes_over_tls() -> tuple[int] | None:
        session = Client(user, password, port=TLS_PORT, ca_file=ca)
        try:
            if session.connect() != 0:
                return None  # not registered yet
            return (
                session.publish(device_topic("generic", fleet_id(namespace, "sensors"), 1), b"x"),
            )
        finally:
            session.close()

    [code] = wait_for(publishes_over_tls, 30, message="the fleet's TLS login")
    assert code < 0x80, hex(code)


def test_a_broker_outage_does_not_hold_up_the_fleets_pods(
    cluster: client.ApiClient, tmp_path: Path
) -> None:
    """The broker unreachable: the fleet's Secret and StatefulSet still follow the spec (its
    pods' clients retry on their own), the error is said and retried; deleting the fleet waits
    for the broker (its credentials must be revoked), unless the finalizer is removed by hand."""
    pattern = f"devicefleet-test-mqttdown-{RUN}-*"
    name = pattern.replace("*", "x")
    process = run_operator(tmp_path, pattern, free_port())
    create_namespace(name)
    api = client.CustomObjectsApi()
    try:
        create_fleet(name, "sensors", profile="generic", devices=3)
        wait_for(lambda: statefulset(name, "sensors"), 30, message="the StatefulSet")
        secret_credentials(name, "sensors")
        wait_for(
            lambda: "registering the fleet in the MQTT broker: cannot reach" in process.logs(),
            30,
            message="the broker error in the operator's log",
        )
        api.delete_namespaced_custom_object(GROUP, VERSION, name, PLURAL, "sensors")
        time.sleep(3)
        held = api.get_namespaced_custom_object(GROUP, VERSION, name, PLURAL, "sensors")
        assert held["metadata"]["deletionTimestamp"]
        assert held["metadata"]["finalizers"] == [f"{GROUP}/finalizer"]
    finally:
        process.stop()
        for item in api.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
            api.patch_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL, item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )  # fmt: skip
        delete_namespace(name)
