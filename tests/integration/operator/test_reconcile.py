"""DeviceFleet → StatefulSet of simulator pods on kwok nodes, level-based."""

from __future__ import annotations

import ipaddress

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.operator.conftest import (
    create_fleet,
    fleet_pods,
    get_fleet,
    kubectl,
    patch_fleet,
    statefulset,
    wait_replicas,
    wait_status,
)
from tests.support import ServiceProcess, wait_for

KWOK_POD_NET = ipaddress.ip_network("127.128.0.0/16")


def env_of(sts: client.V1StatefulSet) -> dict[str, str]:
    return {e.name: e.value for e in sts.spec.template.spec.containers[0].env if e.value}


def test_apply_creates_simulator_pods_on_kwok_nodes(namespace: str) -> None:
    create_fleet(
        namespace, "f2", profile="f2", devices=25, devicesPerPod=10, faults={"duplicateRate": 0.1}
    )
    sts = wait_replicas(namespace, "f2", 3)
    env = env_of(sts)
    assert env["SIMULATOR_FLEET"] == f"{namespace}.f2"
    assert (
        env["SIMULATOR_PROFILE"],
        env["SIMULATOR_DEVICE_COUNT"],
        env["SIMULATOR_FLEET_DEVICES"],
    ) == ("f2", "10", "25")
    assert env["SIMULATOR_DUPLICATE_RATE"] == "0.1"
    owner = sts.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("DeviceFleet", "f2", True)

    def running() -> bool:
        pods = fleet_pods(namespace, "f2")
        return len(pods) == 3 and all(p.status.phase == "Running" for p in pods)

    wait_for(running, 60, message="3 simulator pods Running")
    for pod in fleet_pods(namespace, "f2"):
        assert ipaddress.ip_address(pod.status.pod_ip) in KWOK_POD_NET
        node = client.CoreV1Api().read_node(pod.spec.node_name)
        assert node.metadata.labels["type"] == "kwok"
    # No simulator process answers /status on these fake pods: the breakers are unknown,
    # and the fleet says so rather than claiming health.
    status = wait_status(namespace, "f2", lambda s: s.get("podsReady") == "3/3")["status"]
    assert status["selector"] == (
        "app.kubernetes.io/name=devicefleet-simulator,iot.devicefleet.io/fleet=f2"
    )
    assert status["circuitBreaker"]["unknown"] == 3
    assert status["phase"] == "Degraded"
    table = kubectl("get", "devicefleets", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PROFILE", "DEVICES", "PODS", "READY", "BREAKER", "AGE"]
    assert row.split()[:6] == ["f2", "f2", "25", "3/3", "False", "0/0/0"]


def test_spec_change_rescales_and_rolls_out(namespace: str) -> None:
    create_fleet(namespace, "gen", profile="generic", devices=10, devicesPerPod=5)
    wait_replicas(namespace, "gen", 2)
    patch_fleet(namespace, "gen", {"devices": 23, "publishInterval": "250ms"})
    sts = wait_replicas(namespace, "gen", 5)
    assert env_of(sts)["SIMULATOR_PUBLISH_INTERVAL"] == "0.25"
    assert env_of(sts)["SIMULATOR_FLEET_DEVICES"] == "23"


def test_kubectl_scale_sets_the_number_of_devices(namespace: str) -> None:
    create_fleet(namespace, "trucks", profile="truck", devices=4, devicesPerPod=2)
    wait_replicas(namespace, "trucks", 2)
    kubectl("scale", "-n", namespace, "devicefleet/trucks", "--replicas=7")
    assert get_fleet(namespace, "trucks")["spec"]["devices"] == 7
    wait_replicas(namespace, "trucks", 4)
    scale = kubectl(
        "get",
        "--raw",
        f"/apis/iot.devicefleet.io/v1alpha1/namespaces/{namespace}/devicefleets/trucks/scale",
    ).stdout
    assert '"replicas":7' in scale
    assert "iot.devicefleet.io/fleet=trucks" in scale


def test_pause_keeps_configuration_and_resume_restores(namespace: str) -> None:
    create_fleet(namespace, "p", profile="generic", devices=6, devicesPerPod=2)
    wait_replicas(namespace, "p", 3)
    patch_fleet(namespace, "p", {"paused": True})
    wait_replicas(namespace, "p", 0)
    status = wait_status(
        namespace, "p", lambda s: s.get("phase") == "Paused", message="phase Paused"
    )["status"]
    assert status["replicas"] == 0
    assert env_of(statefulset(namespace, "p"))["SIMULATOR_FLEET_DEVICES"] == "6"
    patch_fleet(namespace, "p", {"paused": False})
    wait_replicas(namespace, "p", 3)


def test_child_deleted_by_hand_is_recreated(namespace: str) -> None:
    create_fleet(namespace, "c", profile="f2", devices=2, devicesPerPod=1)
    old_uid = wait_replicas(namespace, "c", 2).metadata.uid
    client.AppsV1Api().delete_namespaced_stateful_set("c-sim", namespace)
    wait_for(
        lambda: (s := statefulset(namespace, "c")) is not None and s.metadata.uid != old_uid,
        20,
        message="the StatefulSet to be recreated",
    )
    # A hand-edited replica count is put back too.
    client.AppsV1Api().patch_namespaced_stateful_set("c-sim", namespace, {"spec": {"replicas": 9}})
    wait_replicas(namespace, "c", 2)


def test_deleting_the_fleet_garbage_collects_its_children(namespace: str) -> None:
    create_fleet(namespace, "gone", profile="generic", devices=3, devicesPerPod=1)
    wait_replicas(namespace, "gone", 3)
    client.CustomObjectsApi().delete_namespaced_custom_object(
        "iot.devicefleet.io", "v1alpha1", namespace, "devicefleets", "gone"
    )

    def children_gone() -> bool:
        services = client.CoreV1Api().list_namespaced_service(namespace).items
        return statefulset(namespace, "gone") is None and not services

    wait_for(children_gone, 60, message="StatefulSet and Service garbage-collected")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"faults": {"dropRate": 1.5}}, "must be between 0 and 1"),
        ({"devices": 5000, "devicesPerPod": 1}, "more than 1000 pods"),
        (
            {"resilience": {"retry": {"base": "10s", "max": "1s"}}},
            "retry.max must be at least spec.resilience.retry.base",
        ),
        ({"devicesPerPod": 0}, "devicesPerPod"),
        ({"publishInterval": "soon"}, "publishInterval"),
        ({"profile": "toaster"}, "profile"),
    ],
)
def test_invalid_fleets_are_refused_with_a_readable_message(
    namespace: str,
    spec: dict[str, object],
    message: str,
) -> None:
    body = {"profile": "generic"} | spec
    with pytest.raises(ApiException) as err:
        create_fleet(namespace, "bad", **body)
    assert err.value.status == 422
    assert message in str(err.value.body)


def test_operator_killed_mid_reconcile_converges(namespace: str, operator: ServiceProcess) -> None:
    create_fleet(namespace, "k", profile="truck", devices=4, devicesPerPod=2)
    # SIGKILL while the create is being handled (children possibly half made), then change
    # the spec while no operator runs.
    wait_for(
        lambda: "k" in operator.logs() or statefulset(namespace, "k") is not None,
        10,
        interval=0.02,
        message="the operator to pick up the fleet",
    )
    operator.kill()
    patch_fleet(namespace, "k", {"devices": 10})
    operator.start(60)
    wait_replicas(namespace, "k", 5, timeout=40)
    wait_status(
        namespace,
        "k",
        lambda s: (
            s.get("observedGeneration") == get_fleet(namespace, "k")["metadata"]["generation"]
        ),
        message="status of the latest generation",
    )
