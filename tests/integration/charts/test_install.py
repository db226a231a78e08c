"""`helm install` of the umbrella chart on the local control plane (pods on kwok nodes), then
the operator exactly as the chart deploys it (its env, its ServiceAccount's token and RBAC)
reconciles an example fleet."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devicefleet_bootstrap.main import migrate
from devicefleet_bootstrap.settings import Settings as BootstrapSettings
from devicefleet_common.credentials import token_fleet
from devicefleet_common.devices import fleet_device_ids
from devicefleet_operator.constants import GROUP, PLURAL, VERSION
from tests.integration.charts.conftest import KUBECONFIG, UMBRELLA, helm, kubectl
from tests.integration.operator.conftest import KWOK_TOLERATION, delete_namespace
from tests.integration.secure_mqtt import (
    AUTH_PORT,
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
from tests.support import REPO, ServiceProcess, free_port, wait_for

pytestmark = pytest.mark.usefixtures("charts_packaged")

RUN = uuid.uuid4().hex[:6]
RELEASE = f"df-{RUN}"
# Outside both devicefleet-test-<run>-* (the operator tests' operator) and the patterns the
# `make up` operator watches, so only the chart's operator acts here.
NAMESPACE = f"devicefleet-test-helm-{RUN}"
KWOK = {"nodeSelector": {"type": "kwok"}, "tolerations": [KWOK_TOLERATION]}


@pytest.fixture(scope="module")
def release(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    core = client.CoreV1Api()
    core.create_namespace(
        {"metadata": {"name": NAMESPACE, "labels": {"iot.devicefleet.io/kwok-runner": "disabled"}}}
    )
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "global": KWOK | {"environment": "test"},
                "operator": {"watchNamespaces": [NAMESPACE], "simulator": KWOK},
            }
        )
    )
    try:
        helm(
            "install", RELEASE, str(UMBRELLA), "-n", NAMESPACE, "-f", str(values),
            "--wait", "--timeout", "5m",
        )  # fmt: skip
        yield RELEASE
    finally:
        api = client.CustomObjectsApi()
        # The chart's operator is stopped by now: drop kopf's finalizer by hand.
        for item in api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]:
            name = item["metadata"]["name"]
            api.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, {"metadata": {"finalizers": None}}
            )
            api.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        delete_namespace(NAMESPACE)


def test_release_is_deployed_with_every_component(release: str) -> None:
    status = json.loads(helm("status", release, "-n", NAMESPACE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    apps = client.AppsV1Api()
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(NAMESPACE).items}
    for component in ("operator", "ingest", "bridge", "processor", "sink"):
        deployment = deployments[f"{release}-devicefleet-{component}"]
        assert deployment.status.available_replicas == deployment.spec.replicas, component
    statefulsets = {s.metadata.name for s in apps.list_namespaced_stateful_set(NAMESPACE).items}
    assert {f"{release}-kafka", f"{release}-postgresql"} <= statefulsets
    # The post-install hook ran to completion (kwok completes Job pods).
    job = client.BatchV1Api().read_namespaced_job(f"{release}-bootstrap", NAMESPACE)
    assert job.status.succeeded == 1


def test_monitoring_objects_installed_because_the_api_exists(release: str) -> None:
    """No --api-versions here: helm discovered monitoring.coreos.com/v1 on the cluster."""
    api = client.CustomObjectsApi()

    def names(plural: str) -> set[str]:
        items = api.list_namespaced_custom_object("monitoring.coreos.com", "v1", NAMESPACE, plural)[
            "items"
        ]
        return {i["metadata"]["name"] for i in items}

    assert names("servicemonitors") == {
        f"{release}-devicefleet-{c}" for c in ("operator", "ingest", "bridge", "processor", "sink")
    }
    assert names("podmonitors") == {f"{release}-devicefleet-simulator"}
    assert len(names("prometheusrules")) >= 2
    dashboards = client.CoreV1Api().list_namespaced_config_map(
        NAMESPACE, label_selector="grafana_dashboard=1"
    )
    assert len(dashboards.items) >= 3


def release_signing_keys(release: str) -> dict[str, bytes]:
    secret = client.CoreV1Api().read_namespaced_secret(f"{release}-signing-keys", NAMESPACE)
    return {key: base64.b64decode(value) for key, value in secret.data.items()}


def service_account_kubeconfig(service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token, as the
    kubelet would mount), so the operator runs with exactly the chart's RBAC."""
    token = kubectl("create", "token", service_account, "-n", NAMESPACE, "--duration=1h").stdout
    admin = yaml.safe_load(Path(KUBECONFIG).read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cluster}],
                "users": [{"name": service_account, "user": {"token": token.strip()}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "local", "user": service_account}}
                ],
                "current-context": "sa",
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def chart_operator(release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The chart's operator Deployment, run as a process: kwok pods run no containers."""
    deployment = client.AppsV1Api().read_namespaced_deployment(
        f"{release}-devicefleet-operator", NAMESPACE
    )
    pod = deployment.spec.template.spec
    container = pod.containers[0]
    env = {e.name: e.value for e in container.env if e.value_from is None}
    from_secrets = {e.name: e.value_from.secret_key_ref for e in container.env if e.value_from}
    # Only the registry's URL, from the release's database Secret (the kubelet reads it; the
    # operator's own RBAC has no access to Secrets).
    assert list(from_secrets) == ["OPERATOR_DATABASE_URL"]
    assert from_secrets["OPERATOR_DATABASE_URL"].name == f"{release}-database"
    liveness = free_port()
    tmp = tmp_path_factory.mktemp("chart-operator")
    # The signing keys the kubelet would mount from the release's Secret, as files here.
    [keys_volume] = [v for v in pod.volumes if v.name == "signing-keys"]
    [keys_mount] = [m for m in container.volume_mounts if m.name == "signing-keys"]
    assert keys_volume.secret.secret_name == f"{release}-signing-keys"
    keys = release_signing_keys(release)
    # The broker admin's password the kubelet would mount from the release's mqtt-users
    # Secret. The release's quickstart Mosquitto runs on kwok (no containers), so the
    # operator manages the local stack's secured broker instead, with that broker's admin.
    [admin_volume] = [v for v in pod.volumes if v.name == "mqtt-admin"]
    assert admin_volume.secret.secret_name == f"{release}-mqtt-users"
    assert env["OPERATOR_MQTT_ADMIN_USERNAME"] == "devicefleet-admin"
    assert env["OPERATOR_MQTT_ADMIN_PASSWORD_FILE"] == "/etc/devicefleet/mqtt/admin-password"
    broker = secure_broker()
    env |= {
        "OPERATOR_MQTT_HOST": "127.0.0.1",
        "OPERATOR_MQTT_PORT": str(AUTH_PORT),
        "OPERATOR_MQTT_ADMIN_PORT": str(TLS_PORT),
        "OPERATOR_MQTT_ADMIN_TLS_CA_FILE": str(CA_FILE),
        "OPERATOR_MQTT_ADMIN_USERNAME": broker.admin.username,
        "OPERATOR_MQTT_ADMIN_PASSWORD_FILE": str(SECRETS / "admin.password"),
    }
    for name, path in list(env.items()):
        if name.endswith("_KEY_FILE"):
            assert path.startswith(f"{keys_mount.mount_path}/"), (name, path)
            local = tmp / Path(path).name
            local.write_bytes(keys[Path(path).name])
            env[name] = str(local)
    env |= {
        # Loopback ports instead of the pod's 0.0.0.0:9100/8080.
        "OPERATOR_METRICS_HOST": "127.0.0.1",
        "OPERATOR_METRICS_PORT": str(free_port()),
        "OPERATOR_LIVENESS_PORT": str(liveness),
        # The in-cluster URL names the release's PostgreSQL Service; use the local stack's.
        "OPERATOR_DATABASE_URL": BootstrapSettings().database_url,
        "KUBECONFIG": str(service_account_kubeconfig(pod.service_account_name, tmp / "kc")),
    }
    migrate(BootstrapSettings())
    process = ServiceProcess(
        "chart-operator",
        ["devicefleet-operator"],
        env,
        tmp,
        health_url=f"http://127.0.0.1:{liveness}/healthz",
    ).start(60)
    yield env
    api = client.CustomObjectsApi()
    # Fleets go while the operator still runs, so it removes its own finalizer (a fleet a
    # test deleted may be finishing just now: gone already is fine).
    for item in api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]:
        delete_fleet_once(item["metadata"]["name"])
    wait_for(
        lambda: not api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"],
        60,
        message="fleets deleted by the chart's operator",
    )
    process.stop()
    with psycopg.connect(BootstrapSettings().database_url) as conn:
        conn.execute("DELETE FROM device_parameters WHERE site = %s", (NAMESPACE,))


def create_fleet_once(fleet: dict[str, Any]) -> Any:
    """Create the fleet, or read it back: retried calls (other suites restart the API server
    now and then) may find that an earlier try got through (409)."""
    api = client.CustomObjectsApi()
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, fleet)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return api.get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, fleet["metadata"]["name"]
    )


def delete_fleet_once(name: str) -> bool:
    """Delete the fleet; gone already (404) means an earlier try got through."""
    try:
        client.CustomObjectsApi().delete_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
    return True


def test_chart_operator_reconciles_an_example_fleet(release: str, chart_operator: Any) -> None:
    fleet = yaml.safe_load((REPO / "examples/mining-trucks.yaml").read_text())
    client.CustomObjectsApi().create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, fleet
    )
    name = fleet["metadata"]["name"]

    def ready_statefulset() -> Any:
        try:
            sts = client.AppsV1Api().read_namespaced_stateful_set(f"{name}-sim", NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return sts if sts.status.ready_replicas == 2 else None

    sts = wait_for(ready_statefulset, 90, message=f"{name}-sim with 2 ready pods")
    container = sts.spec.template.spec.containers[0]
    # What the chart told the operator to put into simulator pods.
    assert container.image == chart_operator["OPERATOR_SIMULATOR_IMAGE"]
    assert container.image == "devicefleet/simulator:0.1.0"
    sim_env = {e.name: e.value for e in container.env}
    assert sim_env["SIMULATOR_INGEST_URL"] == (
        f"http://{release}-devicefleet-ingest.{NAMESPACE}.svc:8080"
    )
    assert sts.spec.template.spec.node_selector == {"type": "kwok"}

    def reported() -> Any:
        status = (
            client.CustomObjectsApi()
            .get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            .get("status", {})
        )
        return status if status.get("readyReplicas") == 2 else None

    status = wait_for(reported, 60, message="fleet status with 2 ready replicas")
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Progressing"}

    # Its devices are in the registry under the ids the simulators will use.
    with psycopg.connect(BootstrapSettings().database_url) as conn:
        rows = conn.execute(
            "SELECT device_id FROM device_parameters WHERE fleet = %s ORDER BY device_id",
            (f"{NAMESPACE}.{name}",),
        ).fetchall()
    expected = fleet_device_ids("truck", f"{NAMESPACE}.{name}", 0, fleet["spec"]["devices"])
    assert sorted(r[0] for r in rows) == sorted(expected)


def test_chart_operator_writes_fleet_tokens_signed_with_the_release_key(
    release: str, chart_operator: Any
) -> None:
    """The chart's signing keys end to end: generated once (kept by an upgrade), mounted into
    the operator (both) and ingest (the token key only); the operator writes a fleet's Secret
    whose token verifies with the key ingest holds, pods reference it by secretKeyRef, and it
    goes with the fleet (ownerReference, garbage collection)."""
    # Calls retried: other suites restart the kube-apiserver now and then.
    keys = wait_for(lambda: release_signing_keys(release), 30, message="the signing keys")
    assert set(keys) == {"ingest-token-key", "mqtt-password-key"}
    assert all(len(key) >= 32 for key in keys.values())
    ingest = wait_for(
        lambda: client.AppsV1Api().read_namespaced_deployment(
            f"{release}-devicefleet-ingest", NAMESPACE
        ),
        30,
        message="the ingest Deployment",
    )
    [volume] = [v for v in ingest.spec.template.spec.volumes if v.name == "signing-keys"]
    assert [item.key for item in volume.secret.items] == ["ingest-token-key"]
    ingest_env = {e.name: e.value for e in ingest.spec.template.spec.containers[0].env}
    assert ingest_env["INGEST_AUTH_TOKEN_KEY_FILE"] == "/etc/devicefleet/keys/ingest-token-key"

    fleet = yaml.safe_load((REPO / "examples/mining-trucks.yaml").read_text())
    name = "tokens"
    fleet["metadata"]["name"] = name
    created = wait_for(lambda: create_fleet_once(fleet), 30, message=f"fleet {name} created")
    core = client.CoreV1Api()
    secret_name = f"{name}-sim-credentials"

    def secret() -> Any:
        try:
            return core.read_namespaced_secret(secret_name, NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    written = wait_for(secret, 60, message=f"the Secret {secret_name}")
    token = base64.b64decode(written.data["ingest-token"]).decode()
    assert token_fleet(keys["ingest-token-key"], token) == f"{NAMESPACE}.{name}"
    [owner] = written.metadata.owner_references
    assert (owner.kind, owner.uid) == ("DeviceFleet", created["metadata"]["uid"])

    sts = wait_for(
        lambda: client.AppsV1Api().read_namespaced_stateful_set(f"{name}-sim", NAMESPACE),
        60,
        message=f"{name}-sim",
    )
    refs = {
        e.name: e.value_from.secret_key_ref
        for e in sts.spec.template.spec.containers[0].env
        if e.value_from and e.value_from.secret_key_ref
    }
    assert (refs["SIMULATOR_INGEST_TOKEN"].name, refs["SIMULATOR_INGEST_TOKEN"].key) == (
        secret_name,
        "ingest-token",
    )
    assert token not in json.dumps(client.ApiClient().sanitize_for_serialization(sts))

    # An upgrade keeps the keys and the broker users (read back with lookup), so every
    # fleet's token and the bridge's login stay valid. This one also turns on the broker's
    # TLS with the release's own CA, which the next upgrade keeps too.
    users = core.read_namespaced_secret(f"{release}-mqtt-users", NAMESPACE).data
    helm(
        "upgrade", release, str(UMBRELLA), "-n", NAMESPACE, "--reuse-values",
        "--set", "global.mqtt.tls.selfSignedCA=true,global.mqtt.port=8883",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    assert wait_for(lambda: release_signing_keys(release), 30, message="the keys") == keys
    kept = core.read_namespaced_secret(f"{release}-mqtt-users", NAMESPACE).data
    assert kept == users
    tls = core.read_namespaced_secret(f"{release}-mqtt-tls", NAMESPACE).data
    assert set(tls) == {"ca.crt", "tls.crt", "tls.key"}
    helm(
        "upgrade", release, str(UMBRELLA), "-n", NAMESPACE, "--reuse-values",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    assert core.read_namespaced_secret(f"{release}-mqtt-tls", NAMESPACE).data == tls

    wait_for(lambda: delete_fleet_once(name), 30, message=f"fleet {name} deleted")
    wait_for(lambda: secret() is None, 90, message=f"{secret_name} garbage-collected")


def test_chart_operator_registers_an_mqtt_fleet_in_the_broker(
    release: str, chart_operator: Any
) -> None:
    """Broker authentication on by default: the release made its broker users' Secret, the
    bridge logs in with it, and the chart's operator, as the broker's admin, registers an MQTT
    fleet: the password it wrote into the fleet's Secret logs in and publishes the fleet's own
    devices' topics, another fleet's device topic is refused, and deleting the fleet shuts it
    out."""
    users = client.CoreV1Api().read_namespaced_secret(f"{release}-mqtt-users", NAMESPACE)
    assert set(users.data) == {"admin-password", "bridge-password"}
    bridge = client.AppsV1Api().read_namespaced_deployment(
        f"{release}-devicefleet-bridge", NAMESPACE
    )
    bridge_env = {e.name: e for e in bridge.spec.template.spec.containers[0].env}
    assert bridge_env["BRIDGE_MQTT_USERNAME"].value == "devicefleet-bridge"
    ref = bridge_env["BRIDGE_MQTT_PASSWORD"].value_from.secret_key_ref
    assert (ref.name, ref.key) == (f"{release}-mqtt-users", "bridge-password")

    fleet = yaml.safe_load((REPO / "examples/mining-trucks.yaml").read_text())
    name = "broker"
    fleet["metadata"]["name"] = name
    fleet["spec"] |= {"transport": "mqtt", "devices": 2, "devicesPerPod": 2}
    wait_for(lambda: create_fleet_once(fleet), 30, message=f"fleet {name} created")
    credentials = secret_credentials(NAMESPACE, name)
    fleet_name = f"{NAMESPACE}.{name}"
    assert credentials[0] == fleet_name

    def publishes(topic: str) -> tuple[int] | None:
        """(PUBACK reason code,) once the fleet's login is accepted."""
        session = Client(*credentials)
        try:
            if session.connect() != 0:
                return None  # not registered yet
            return (session.publish(topic, b"{}"),)
        finally:
            session.close()

    [own] = wait_for(
        lambda: publishes(device_topic("truck", fleet_name, 0)), 30, message="fleet login"
    )
    assert own < 0x80, hex(own)
    assert publishes(device_topic("truck", f"{NAMESPACE}.other", 0)) == (NOT_AUTHORIZED,)

    wait_for(lambda: delete_fleet_once(name), 30, message=f"fleet {name} deleted")

    def refused() -> bool:
        session = Client(*credentials)
        try:
            return session.connect() in REFUSED_LOGIN
        finally:
            session.close()

    wait_for(refused, 60, message=f"{name}'s login refused after deletion")
