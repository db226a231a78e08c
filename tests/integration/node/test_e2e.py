"""End to end through Kubernetes on the real node: `helm install` of the umbrella chart (every
component and the quickstart Kafka, Mosquitto and PostgreSQL in pods of the locally built
images; MQTT over TLS with the chart's own CA), fleets of every profile over MQTT and HTTP
(one in another namespace), rows in the database; then an ingest outage that opens the HTTP
fleets' breakers in `kubectl get devicefleet`, and a recovery after which every buffered
message is stored exactly once."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from kubernetes import client

from devicefleet_operator.builders import fleet_id
from devicefleet_operator.constants import GROUP, PLURAL, STATUS_PORT, VERSION
from tests.integration.node.conftest import REAL_NODE, VALUES_LOCAL, helm, kubectl, pod_ips
from tests.integration.operator.conftest import create_fleet, delete_namespace, get_fleet
from tests.integration.secure_mqtt import (
    NOT_AUTHORIZED,
    REFUSED_LOGIN,
    Client,
    secret_credentials,
)
from tests.integration.test_mqtt_security import device_topic
from tests.support import REPO, wait_for

# Setup (helm install --wait of the whole platform) counts toward the first test's timeout.
pytestmark = pytest.mark.timeout(900)

RUN = uuid.uuid4().hex[:6]
RELEASE = "e2e"
# devicefleet-test-*: outside what the `make up` release's operator watches.
NAMESPACE = f"devicefleet-test-e2e-{RUN}"
# Fleets outside the release's namespace: what watchNamespaces is for.
OTHER_NAMESPACE = f"devicefleet-test-e2e-{RUN}-other"
UMBRELLA = REPO / "charts" / "devicefleet"

# Fast breakers so an outage shows within seconds: 3 failed attempts open it, probe after 5 s.
RESILIENCE = {
    "retry": {"maxAttempts": 2, "base": "200ms", "max": "1s"},
    "circuitBreaker": {"failMax": 3, "resetTimeout": "5s"},
    "bufferSize": 10000,
}
# name: (profile, transport, devices, devicesPerPod)
FLEETS = {
    "trucks": ("truck", "http", 6, 3),
    "sensors": ("generic", "http", 4, 4),
    "controllers": ("f2", "mqtt", 4, 4),
}
MQTT_TLS_PORT = 8883
BREAKER_COLUMN = re.compile(r"\b(\d+)/(\d+)/(\d+)\b")
HTTP_FLEETS = [name for name, (_, transport, _, _) in FLEETS.items() if transport == "http"]


@pytest.fixture(scope="module")
def release(real_node: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        client.CoreV1Api().create_namespace({"metadata": {"name": namespace}})
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    # ClusterIP Services: the NodePorts of values-local.yaml belong to the `make up` release.
    values.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "environment": "test",
                    "nodeSelector": REAL_NODE,
                    # The broker's one listener speaks TLS: the bridge, the operator and the
                    # fleets' pods verify its certificate against the release's CA.
                    "mqtt": {"port": MQTT_TLS_PORT, "tls": {"selfSignedCA": True}},
                },
                "operator": {"watchNamespaces": [NAMESPACE, OTHER_NAMESPACE]},
                "ingest": {"service": {"type": "ClusterIP", "nodePort": None}},
                "mosquitto": {"service": {"type": "ClusterIP", "nodePort": None}},
                "nodeSelector": REAL_NODE,
            }
        )
    )
    try:
        helm(
            "install", RELEASE, str(UMBRELLA), "-n", NAMESPACE,
            "-f", str(VALUES_LOCAL), "-f", str(values), "--wait", "--timeout", "8m",
        )  # fmt: skip
        yield RELEASE
    finally:
        api = client.CustomObjectsApi()

        def fleets_left(namespace: str) -> list[Any]:
            return list(
                api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            )

        for namespace in (NAMESPACE, OTHER_NAMESPACE):
            for item in fleets_left(namespace):
                api.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, item["metadata"]["name"]
                )
        # The release's operator holds the fleets' finalizers: uninstalling it before it has
        # let go would leave the namespace terminating for ever.
        wait_for(
            lambda: not fleets_left(NAMESPACE) and not fleets_left(OTHER_NAMESPACE),
            60,
            message="the operator to finalize the deleted fleets",
        )
        helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m", check=False)
        delete_namespace(OTHER_NAMESPACE)
        delete_namespace(NAMESPACE)


def secret_data(name: str) -> dict[str, bytes]:
    """A Secret of the release, decoded."""
    data = client.CoreV1Api().read_namespaced_secret(name, NAMESPACE).data
    return {key: base64.b64decode(value) for key, value in data.items()}


@pytest.fixture(scope="module")
def database(release: str) -> Iterator[psycopg.Connection[Any]]:
    """The quickstart PostgreSQL pod, through its Service's ClusterIP (kube-proxy's rules on
    this machine), with the credentials of the release's Secret."""
    core = client.CoreV1Api()
    field = {k: v.decode() for k, v in secret_data(f"{RELEASE}-database").items()}
    service = core.read_namespaced_service(f"{RELEASE}-postgresql", NAMESPACE)
    with psycopg.connect(
        host=service.spec.cluster_ip,
        port=5432,
        user=field["username"],
        password=field["password"],
        dbname=field["database"],
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        yield conn


@pytest.fixture(scope="module")
def fleets(release: str) -> dict[str, str]:
    """Every profile, over HTTP and MQTT, no faults (every gap in the data would be a loss)."""
    ids = {}
    for name, (profile, transport, devices, per_pod) in FLEETS.items():
        create_fleet(
            NAMESPACE, name, profile=profile, transport=transport, devices=devices,
            devicesPerPod=per_pod, publishInterval="500ms", resilience=RESILIENCE,
        )  # fmt: skip
        ids[name] = fleet_id(NAMESPACE, name)
    return ids


def distinct_in_fleet(db: psycopg.Connection[Any], column: str, fleet: str) -> int:
    """Distinct device_id or message_id values among the fleet's stored rows."""
    assert column in ("device_id", "message_id")
    row = db.execute(
        f"SELECT count(DISTINCT {column}) FROM iot_measurements WHERE attributes->>'fleet' = %s",
        (fleet,),
    ).fetchone()
    return int(row[0]) if row else 0


def devices_with_rows(db: psycopg.Connection[Any], fleet: str) -> int:
    return distinct_in_fleet(db, "device_id", fleet)


def simulator_status(fleet: str) -> list[dict[str, Any]]:
    """/status of every simulator pod of the fleet, straight from its pod IP on the bridge."""
    statuses = []
    for ip in pod_ips(NAMESPACE, f"iot.devicefleet.io/fleet={fleet}"):
        statuses.append(httpx.get(f"http://{ip}:{STATUS_PORT}/status", timeout=3).json())
    return statuses


def test_platform_pods_run_on_the_real_node(release: str, real_node: dict[str, Any]) -> None:
    pods = client.CoreV1Api().list_namespaced_pod(NAMESPACE).items
    running = {p.metadata.name: p for p in pods if p.status.phase == "Running"}
    components = ("operator", "ingest", "bridge", "processor", "sink")
    for name in [f"{RELEASE}-devicefleet-{c}" for c in components] + [
        f"{RELEASE}-kafka-0",
        f"{RELEASE}-postgresql-0",
        f"{RELEASE}-mosquitto",
    ]:
        matches = [p for n, p in running.items() if n.startswith(name)]
        assert matches, f"no running pod {name}* in {sorted(running)}"
        for pod in matches:
            assert pod.spec.node_name == real_node["name"]
            assert all(c.ready for c in pod.status.container_statuses)
    job = client.BatchV1Api().read_namespaced_job(f"{RELEASE}-bootstrap", NAMESPACE)
    assert job.status.succeeded == 1


def test_rows_from_every_fleet_within_60_seconds(
    fleets: dict[str, str], database: psycopg.Connection[Any]
) -> None:
    start = time.monotonic()
    for name, fleet in fleets.items():
        devices = FLEETS[name][2]
        remaining = max(1.0, 60 - (time.monotonic() - start))
        wait_for(
            lambda f=fleet, n=devices: devices_with_rows(database, f) == n,  # type: ignore[misc]
            remaining,
            interval=1,
            message=f"rows from all {devices} devices of {name}",
        )
    # And the operator, polling each pod's /status over the pod network, reports them ready.
    for name in fleets:
        pods = FLEETS[name][2] // FLEETS[name][3]
        wait_for(
            lambda n=name, p=pods: get_fleet(NAMESPACE, n)["status"].get("podsReady") == f"{p}/{p}",  # type: ignore[misc]
            30,
            interval=1,
            message=f"{name}: {pods}/{pods} pods ready in the DeviceFleet status",
        )


def test_a_fleet_in_another_namespace_delivers_over_mqtt(
    fleets: dict[str, str], database: psycopg.Connection[Any]
) -> None:
    """A fleet in a namespace of its own: the operator writes its credentials there and
    registers it in the broker, its pods find the broker by the release's qualified name (and
    verify its certificate for it), and every device's rows arrive."""
    create_fleet(
        OTHER_NAMESPACE, "remote", profile="generic", transport="mqtt", devices=2,
        devicesPerPod=2, publishInterval="500ms", resilience=RESILIENCE,
    )  # fmt: skip
    remote = fleet_id(OTHER_NAMESPACE, "remote")
    wait_for(
        lambda: devices_with_rows(database, remote) == 2,
        90,
        interval=1,
        message="rows from both devices of the fleet in another namespace",
    )
    sts = client.AppsV1Api().read_namespaced_stateful_set("remote-sim", OTHER_NAMESPACE)
    env = {e.name: e.value for e in sts.spec.template.spec.containers[0].env}
    assert env["SIMULATOR_MQTT_HOST"] == f"{RELEASE}-mosquitto.{NAMESPACE}.svc"


def test_quickstart_broker_admits_each_fleet_only_to_its_own_topics(
    fleets: dict[str, str], database: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The chart's Mosquitto pod with authentication (its init container made the admin and
    the bridge; the operator pod registered the fleets) and TLS with the release's CA: its
    certificate names the Service, no anonymous client, and an MQTT fleet's own credentials
    cannot publish as another fleet's device. Its own devices' rows arrived through the
    bridge (the rows test), so its login, the bridge's, and both TLS handshakes work."""
    host = client.CoreV1Api().read_namespaced_service(f"{RELEASE}-mosquitto", NAMESPACE)
    broker = host.spec.cluster_ip
    ca = tmp_path / "ca.crt"
    ca.write_bytes(secret_data(f"{RELEASE}-mqtt-tls")["ca.crt"])
    # The name the pods use (in the release's namespace) and its FQDN, by the broker's IP.
    context = ssl.create_default_context(cafile=str(ca))
    for name in (f"{RELEASE}-mosquitto", f"{RELEASE}-mosquitto.{NAMESPACE}.svc.cluster.local"):
        with (
            socket.create_connection((broker, MQTT_TLS_PORT), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3"), name
    untrusted = ssl.create_default_context()
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((broker, MQTT_TLS_PORT), timeout=10) as raw,
    ):
        untrusted.wrap_socket(raw, server_hostname=f"{RELEASE}-mosquitto")

    def tls_client(username: str | None, password: str | None) -> Client:
        return Client(
            username, password, MQTT_TLS_PORT, ca_file=ca, host=broker, check_hostname=False
        )

    anonymous = tls_client(None, None)
    try:
        assert anonymous.connect() in REFUSED_LOGIN
    finally:
        anonymous.close()
    username, password = secret_credentials(NAMESPACE, "controllers")
    assert username == fleets["controllers"]
    session = tls_client(username, password)
    try:
        assert session.connect() == 0
        # A device of the HTTP trucks fleet: the broker refuses it, nothing reaches the bridge.
        forged = device_topic("truck", fleets["trucks"], 0)
        assert session.publish(forged, b"{}") == NOT_AUTHORIZED
    finally:
        session.close()
    assert devices_with_rows(database, fleets["controllers"]) == FLEETS["controllers"][2]


def test_ingest_outage_opens_breakers_and_recovery_delivers_exactly_once(
    fleets: dict[str, str], database: psycopg.Connection[Any]
) -> None:
    apps = client.AppsV1Api()
    ingest = f"{RELEASE}-devicefleet-ingest"
    for name in HTTP_FLEETS:
        wait_breakers(name, "closed", 60, "all closed before the outage")

    apps.patch_namespaced_deployment_scale(ingest, NAMESPACE, {"spec": {"replicas": 0}})
    wait_for(
        lambda: not pod_ips(NAMESPACE, "app.kubernetes.io/name=devicefleet-ingest"),
        60,
        message="ingest pods gone",
    )
    outage = time.monotonic()
    for name in HTTP_FLEETS:
        remaining = max(1.0, 10 - (time.monotonic() - outage))
        wait_breakers(name, "tripped", remaining, "tripped in the DeviceFleet status within 10 s")
    printed = kubectl("get", "devicefleets", "-n", NAMESPACE).stdout
    for name in HTTP_FLEETS:
        pods = FLEETS[name][2] // FLEETS[name][3]
        line = next(line for line in printed.splitlines() if line.startswith(name))
        # closed/open/half-open: none closed (a pod may be probing at this instant).
        closed, opened, half_open = (int(n) for n in BREAKER_COLUMN.findall(line)[0])
        assert (closed, opened + half_open) == (0, pods), line
    # Messages pile up in the simulators' buffers meanwhile.
    time.sleep(5)
    buffered = {n: sum(s["messages"]["buffered"] for s in simulator_status(n)) for n in HTTP_FLEETS}
    assert all(count > 0 for count in buffered.values()), buffered

    apps.patch_namespaced_deployment_scale(ingest, NAMESPACE, {"spec": {"replicas": 1}})
    for name in HTTP_FLEETS:
        wait_breakers(name, "closed", 120, "closed again after ingest is back")
        # Buffers empty is the point. inFlight may never read 0 at the same instant: an edge
        # gateway holds live readings for its batch linger (0.2 s) at all times.
        wait_for(
            lambda n=name: all(  # type: ignore[misc]
                s["messages"]["buffered"] == 0 for s in simulator_status(n)
            ),
            120,
            interval=1,
            message=f"{name}: buffers drained",
        )
    for name in HTTP_FLEETS:
        statuses = simulator_status(name)
        assert all(s["messages"]["bufferOverflow"] == 0 for s in statuses)
        acknowledged = sum(s["messages"]["acknowledged"] for s in statuses)
        # Exactly once: every message a simulator saw acknowledged reaches the database (the
        # sink writes in batches, hence the wait), and per device and boot every sequence
        # number up to the newest stored one is there once (no faults, so a gap would be a lost
        # message; the unique key makes a second copy impossible to store).
        wait_for(
            lambda f=fleets[name], a=acknowledged: (  # type: ignore[misc]
                stored_messages(database, f) >= a and not sequence_gaps(database, f)
            ),
            60,
            interval=1,
            message=f"{name}: {acknowledged} acknowledged messages stored, without gaps",
        )


def wait_breakers(fleet: str, state: str, timeout: float, why: str) -> None:
    """Every publisher (pod) of the fleet in breaker `state`, as the DeviceFleet status says.

    "tripped" is open or half-open: while the far side stays down, each breaker cycles
    between the two (a probe every reset timeout), and the pods' cycles are not in step.
    """
    pods = FLEETS[fleet][2] // FLEETS[fleet][3]

    def count() -> int:
        breakers = get_fleet(NAMESPACE, fleet)["status"]["circuitBreaker"]
        if state == "tripped":
            return int(breakers["open"] + breakers["halfOpen"]) if not breakers["closed"] else 0
        return int(breakers[state])

    wait_for(
        lambda: count() == pods,
        timeout,
        interval=0.5,
        message=f"{fleet}: {pods} breaker(s) {why}",
    )


def sequence_gaps(db: psycopg.Connection[Any], fleet: str) -> list[tuple[Any, ...]]:
    """(device, boot, stored, highest sequence + 1) where the stored messages are fewer than
    the sequence numbers up to the highest stored one."""
    return db.execute(
        """
        SELECT device_id, boot, count(*) AS stored, max(seq) + 1 AS expected
        FROM (
            SELECT DISTINCT message_id, device_id,
                   substring(message_id from ':([0-9]+):[0-9]+$') AS boot,
                   substring(message_id from ':([0-9]+)$')::bigint AS seq
            FROM iot_measurements WHERE attributes->>'fleet' = %s
        ) m
        GROUP BY device_id, boot
        HAVING count(*) <> max(seq) + 1
        """,
        (fleet,),
    ).fetchall()


def stored_messages(db: psycopg.Connection[Any], fleet: str) -> int:
    return distinct_in_fleet(db, "message_id", fleet)
