"""The operator against the real control plane of the local stack (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok nodes). Missing → the session fails."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devicefleet_bootstrap.main import migrate
from devicefleet_bootstrap.settings import Settings as BootstrapSettings
from devicefleet_operator.constants import GROUP, PLURAL, VERSION
from tests.integration.conftest import DATABASE_URL
from tests.support import REPO, ServiceProcess, free_port, wait_for

STATE = Path(os.environ.get("DEVSTACK_STATE", Path.home() / ".local/state/devicefleet"))
KUBECONFIG = str(STATE / "kubeconfig")
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
RUN = uuid.uuid4().hex[:6]
HEALTH_STALE_AFTER = 60  # seconds: a prediction older than this no longer counts


def _devstack_tool(
    tool: str, args: tuple[str, ...], check: bool, input: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The pinned kubectl/helm of the local stack, as the admin of the local cluster."""
    result = subprocess.run(
        ["bash", str(REPO / f"devstack/k8s/{tool}.sh"), *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "KUBECONFIG": KUBECONFIG},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{tool} {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr}"
        )
    return result


def kubectl(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return _devstack_tool("kubectl", args, check, input)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _devstack_tool("helm", args, check)


@pytest.fixture(scope="session")
def cluster() -> client.ApiClient:
    try:
        config.load_kube_config(KUBECONFIG)
        client.VersionApi().get_code()
        nodes = client.CoreV1Api().list_node(label_selector="type=kwok").items
    except Exception as exc:
        pytest.fail(
            f"the local Kubernetes control plane is not reachable ({exc!r}); start it "
            f"with `make up` or `bash devstack/up.sh`",
            pytrace=False,
        )
    if not nodes:
        pytest.fail("no kwok nodes (label type=kwok) in the local cluster", pytrace=False)
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}")
    return client.ApiClient()


def start_operator(
    name: str,
    log_dir: Path,
    namespaces: list[str],
    kubeconfig: str | Path = KUBECONFIG,
    **settings: str,
) -> ServiceProcess:
    """A real operator process watching ``namespaces``, ready (/healthz), with the tests'
    defaults (simulator pods on kwok nodes, 1 s status polls, DEBUG log) and ``settings``
    (OPERATOR_* names without the prefix) on top."""
    liveness = free_port()
    env = {
        "KUBECONFIG": str(kubeconfig),
        "OPERATOR_NAMESPACES": json.dumps(namespaces),
        "OPERATOR_STANDALONE": "true",
        "OPERATOR_STATUS_INTERVAL": "1",
        "OPERATOR_STATUS_TIMEOUT": "0.5",
        "OPERATOR_SIMULATOR_IMAGE": "devicefleet/simulator:test",
        "OPERATOR_NODE_SELECTOR": json.dumps({"type": "kwok"}),
        "OPERATOR_TOLERATIONS": json.dumps([KWOK_TOLERATION]),
        "OPERATOR_METRICS_PORT": str(free_port()),
        "OPERATOR_LIVENESS_PORT": str(liveness),
        "OPERATOR_LOG_LEVEL": "DEBUG",
    } | {f"OPERATOR_{key}": value for key, value in settings.items()}
    return ServiceProcess(
        name,
        ["devicefleet-operator"],
        env,
        log_dir,
        health_url=f"http://127.0.0.1:{liveness}/healthz",
    ).start(60)


@pytest.fixture(scope="session")
def operator(
    cluster: client.ApiClient, stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One operator for the session, watching only this session's namespaces; it registers
    fleets' devices in, and reads their health predictions from, the stack's database."""
    migrate(BootstrapSettings(database_url=DATABASE_URL))
    process = start_operator(
        "operator",
        tmp_path_factory.mktemp("operator-logs"),
        # `make up`'s operator leaves devicefleet-test-* namespaces to this one.
        [f"devicefleet-test-{RUN}-*"],
        DATABASE_URL=DATABASE_URL,
        HEALTH_STALE_AFTER=str(HEALTH_STALE_AFTER),
    )
    yield process
    process.stop()


@pytest.fixture
def namespace(cluster: client.ApiClient, operator: ServiceProcess) -> Iterator[str]:
    name = f"devicefleet-test-{RUN}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api()
    # Tests play the kubelet themselves where they need to; keep devstack's kwok runner out.
    core.create_namespace(
        {"metadata": {"name": name, "labels": {"iot.devicefleet.io/kwok-runner": "disabled"}}}
    )
    yield name
    # Fleets first, while the operator still runs; then the namespace.
    api = client.CustomObjectsApi()
    for item in api.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
        api.delete_namespaced_custom_object(GROUP, VERSION, name, PLURAL, item["metadata"]["name"])
    delete_namespace(name)


def delete_namespace(name: str, timeout: float = 180) -> None:
    """Delete a test namespace and wait until it is gone: kopf holds every handler until all
    its per-namespace watch streams have listed, and a namespace still terminating when the
    operator (re)starts can keep that from ever happening (seen with the kill-mid-reconcile
    test)."""
    core = client.CoreV1Api()
    # Pods without a grace period: the namespace controller otherwise requeues the namespace
    # after each pod's grace period, and a busy CI machine saw a deletion exceed two minutes.
    core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout, interval=0.5, message=f"namespace {name} to be deleted")


def fleet_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeviceFleet",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_fleet(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi().create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, fleet_body(name, **spec)
        )
    )


def patch_fleet(namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def get_fleet(namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    )


def statefulset(namespace: str, fleet: str) -> Any:
    try:
        return client.AppsV1Api().read_namespaced_stateful_set(f"{fleet}-sim", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_replicas(namespace: str, fleet: str, replicas: int, timeout: float = 20) -> Any:
    return wait_for(
        lambda: (
            (s := statefulset(namespace, fleet)) is not None and s.spec.replicas == replicas and s
        ),
        timeout,
        message=f"StatefulSet {fleet}-sim with {replicas} replicas",
    )


def wait_status(
    namespace: str, fleet: str, check: Any, timeout: float = 30, message: str = "fleet status"
) -> dict[str, Any]:
    return wait_for(
        lambda: (f := get_fleet(namespace, fleet)) and check(f.get("status") or {}) and f,
        timeout,
        message=message,
    )


def fleet_pods(namespace: str, fleet: str) -> list[Any]:
    return (
        client.CoreV1Api()
        .list_namespaced_pod(namespace, label_selector=f"iot.devicefleet.io/fleet={fleet}")
        .items
    )
