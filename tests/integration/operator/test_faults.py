"""The operator under faults of the Kubernetes API (issue 6, item 4): the stack's real
kube-apiserver restarted, throttled with 429s by API Priority and Fairness, watch connections
cut mid-stream, the operator SIGKILLed mid-reconcile, and updates that race the operator's own.
Every scenario ends in the converged state, asserted against the real API.

Marker ``chaos``: these tests restart or throttle the kube-apiserver every other test shares,
so they run last. Each test runs an operator process of its own, as a service account of its
own (APF exempts system:masters, the admin's group), watching a namespace of its own.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devicefleet_operator.builders import fleet_labels
from devicefleet_operator.constants import GROUP, LABEL_FLEET, PLURAL, SPEC_HASH_ANNOTATION, VERSION
from tests.integration.operator.conftest import (
    RUN,
    create_fleet,
    delete_namespace,
    fleet_pods,
    get_fleet,
    kubectl,
    patch_fleet,
    start_operator,
    statefulset,
)
from tests.integration.operator.faults import (
    APISERVER_PORT,
    CuttingProxy,
    NoisyNeighbour,
    admin_ca,
    apiserver_down,
    apiserver_up,
    rejected_requests,
    service_account_token,
    throttled_identity_manifests,
    write_kubeconfig,
)
from tests.support import ServiceProcess, wait_for

# In the chaos tier (runs last: it kills the API server every test shares); on its own:
# `pytest -m operator_faults`.
pytestmark = [pytest.mark.chaos, pytest.mark.operator_faults]

IDENTITY_NAMESPACE = f"devicefleet-faults-{RUN}"
OPERATOR_ACCOUNT = "operator"
NEIGHBOUR_ACCOUNT = "neighbour"
CONVERGE_TIMEOUT = 90  # seconds from the end of a fault to the fleets' converged state
KOPF_DIFFBASE = f"{GROUP}/last-handled-configuration"
# What kopf keeps on a fleet it has finished with; anything else under GROUP is a handler's
# progress (retry counts, started-at), left behind only while a handler is unfinished.
KOPF_AT_REST = {KOPF_DIFFBASE, f"{GROUP}/kopf-managed"}


@dataclass
class Identity:
    operator_token: str
    neighbour_token: str
    ca: Path


@pytest.fixture(scope="module")
def identity(
    cluster: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Identity]:
    """Service accounts for the operator (bound to cluster-admin: RBAC is test_rbac's
    subject, not this module's) and for a noisy neighbour (may view this namespace, where
    ~1 MB of ConfigMaps make each of its lists hold a seat for a while)."""
    core, rbac = client.CoreV1Api(), client.RbacAuthorizationV1Api()
    core.create_namespace({"metadata": {"name": IDENTITY_NAMESPACE}})
    binding = f"{IDENTITY_NAMESPACE}-operator"
    try:
        for account in (OPERATOR_ACCOUNT, NEIGHBOUR_ACCOUNT):
            core.create_namespaced_service_account(
                IDENTITY_NAMESPACE, {"metadata": {"name": account}}
            )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": OPERATOR_ACCOUNT,
                        "namespace": IDENTITY_NAMESPACE,
                    }
                ],
            }
        )
        rbac.create_namespaced_role_binding(
            IDENTITY_NAMESPACE,
            {
                "metadata": {"name": "neighbour-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": NEIGHBOUR_ACCOUNT,
                        "namespace": IDENTITY_NAMESPACE,
                    }
                ],
            },
        )
        for i in range(100):
            core.create_namespaced_config_map(
                IDENTITY_NAMESPACE,
                {"metadata": {"name": f"ballast-{i}"}, "data": {"x": "x" * 10_000}},
            )
        ca = tmp_path_factory.mktemp("faults") / "ca.crt"
        ca.write_bytes(admin_ca())
        yield Identity(
            service_account_token(IDENTITY_NAMESPACE, OPERATOR_ACCOUNT),
            service_account_token(IDENTITY_NAMESPACE, NEIGHBOUR_ACCOUNT),
            ca,
        )
    finally:
        wait_for(apiserver_up, 120, message="kube-apiserver back for the cleanup")
        try:
            rbac.delete_cluster_role_binding(binding)
        except ApiException as exc:
            if exc.status != 404:
                raise
        delete_namespace(IDENTITY_NAMESPACE)


@dataclass
class FaultEnv:
    """A namespace, and operator processes watching only it."""

    namespace: str
    identity: Identity
    workdir: Path
    operators: list[ServiceProcess] = field(default_factory=list)

    def kubeconfig(self, port: int = APISERVER_PORT) -> Path:
        path = self.workdir / f"kubeconfig-{port}.json"
        return write_kubeconfig(path, port, self.identity.operator_token)

    def operator(self, kubeconfig: Path | None = None) -> ServiceProcess:
        process = start_operator(
            f"operator-{len(self.operators)}",
            self.workdir,
            [self.namespace],
            kubeconfig or self.kubeconfig(),
            # The device registry is not under test here: only the Kubernetes side is.
            DATABASE_URL="",
        )
        self.operators.append(process)
        return process


@pytest.fixture
def faults(identity: Identity, tmp_path: Path) -> Iterator[FaultEnv]:
    name = f"{IDENTITY_NAMESPACE}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api().create_namespace(
        {"metadata": {"name": name, "labels": {"iot.devicefleet.io/kwok-runner": "disabled"}}}
    )
    env = FaultEnv(name, identity, tmp_path)
    try:
        yield env
    finally:
        wait_for(apiserver_up, 120, message="kube-apiserver back for the cleanup")
        api = client.CustomObjectsApi()
        for item in api.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
            fleet = item["metadata"]["name"]
            # No operator may be left to remove a finalizer: drop them with the fleet.
            api.patch_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL, fleet, {"metadata": {"finalizers": None}}
            )
            api.delete_namespaced_custom_object(GROUP, VERSION, name, PLURAL, fleet)
        for process in env.operators:
            process.stop()
        delete_namespace(name)


# --- the converged state ------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    fleet: str
    devices: int
    per_pod: int
    paused: bool = False

    @property
    def replicas(self) -> int:
        return 0 if self.paused else math.ceil(self.devices / self.per_pod)


def check_converged(namespace: str, want: Want) -> bool:
    """Everything a converged fleet is, read from the API; raises saying what is not yet."""
    fleet = get_fleet(namespace, want.fleet)
    meta, spec, status = fleet["metadata"], fleet["spec"], fleet.get("status") or {}
    # The user's spec survived the operator's writes.
    assert spec["devices"] == want.devices, spec
    assert bool(spec.get("paused")) == want.paused, spec
    selector = f"{LABEL_FLEET}={want.fleet}"
    sets = client.AppsV1Api().list_namespaced_stateful_set(namespace, label_selector=selector)
    services = client.CoreV1Api().list_namespaced_service(namespace, label_selector=selector)
    assert [s.metadata.name for s in sets.items] == [f"{want.fleet}-sim"], "one StatefulSet"
    assert [s.metadata.name for s in services.items] == [f"{want.fleet}-sim"], "one Service"
    sts = sets.items[0]
    assert sts.spec.replicas == want.replicas, f"replicas {sts.spec.replicas}"
    assert fleet_labels(want.fleet).items() <= (sts.metadata.labels or {}).items()
    assert SPEC_HASH_ANNOTATION in (sts.metadata.annotations or {})
    env = {e.name: e.value for e in sts.spec.template.spec.containers[0].env if e.value}
    assert env["SIMULATOR_FLEET_DEVICES"] == str(want.devices)
    owners = [(o.uid, o.controller) for o in sts.metadata.owner_references or []]
    assert owners == [(meta["uid"], True)], owners
    assert len(fleet_pods(namespace, want.fleet)) == want.replicas, "pods"
    assert status.get("observedGeneration") == meta["generation"], status
    assert status.get("replicas") == want.replicas
    assert status.get("podsReady") == f"{want.replicas}/{want.replicas}", status
    # kwok pods are Ready but serve no /status: breakers unknown, hence Degraded.
    assert status.get("phase") == ("Paused" if want.paused else "Degraded"), status
    # kopf finished: no handler progress left, and what it last handled is this spec.
    annotations = meta.get("annotations") or {}
    leftovers = {k for k in annotations if k.startswith(GROUP)} - KOPF_AT_REST
    assert not leftovers, f"kopf progress left behind: {leftovers}"
    assert json.loads(annotations[KOPF_DIFFBASE])["spec"] == spec
    return True


def wait_converged(namespace: str, *wants: Want, timeout: float = CONVERGE_TIMEOUT) -> float:
    """Seconds it took until every fleet was converged."""
    started = time.monotonic()
    for want in wants:
        remaining = max(1.0, timeout - (time.monotonic() - started))
        wait_for(
            lambda w=want: check_converged(namespace, w),  # type: ignore[misc]
            remaining,
            interval=0.5,
            message=f"{want} converged",
        )
    return time.monotonic() - started


def report(request: pytest.FixtureRequest, **measured: object) -> None:
    for key, value in measured.items():
        request.node.user_properties.append((key, value))
    print(f"{request.node.name}: {measured}")


def warnings_for(namespace: str, fleet: str) -> list[str]:
    events = client.CoreV1Api().list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={fleet},type=Warning"
    )
    return [f"{e.reason}: {e.message}" for e in events.items]


# --- scenarios ----------------------------------------------------------------------------


def test_apiserver_restart_while_fleets_change(
    faults: FaultEnv, request: pytest.FixtureRequest
) -> None:
    ns = faults.namespace
    operator = faults.operator()
    pid = operator.proc.pid if operator.proc else None
    create_fleet(ns, "a", profile="generic", devices=4, devicesPerPod=2)
    create_fleet(ns, "b", profile="generic", devices=6, devicesPerPod=2)
    wait_converged(ns, Want("a", 4, 2), Want("b", 6, 2))

    # Changes right before the outage: the operator may not get to them before it begins.
    patch_fleet(ns, "a", {"devices": 10})
    create_fleet(ns, "c", profile="f2", devices=4, devicesPerPod=2)
    outage_started = time.monotonic()
    with apiserver_down():
        time.sleep(6)
        assert operator.alive(), f"operator died with the apiserver:\n{operator.log_tail()}"
    outage = time.monotonic() - outage_started
    # Changes right after it: the watches must have come back to see them.
    patch_fleet(ns, "b", {"paused": True})
    create_fleet(ns, "d", profile="truck", devices=2, devicesPerPod=1)
    took = wait_converged(
        ns, Want("a", 10, 2), Want("b", 6, 2, paused=True), Want("c", 4, 2), Want("d", 2, 1)
    )
    assert operator.alive(), operator.log_tail()
    assert operator.proc is not None
    assert operator.proc.pid == pid, "the operator was not restarted"
    report(request, outage_s=round(outage, 1), converged_after_s=round(took, 1))


def test_throttled_by_priority_and_fairness(
    faults: FaultEnv, request: pytest.FixtureRequest
) -> None:
    ns = faults.namespace
    operator = faults.operator()
    create_fleet(ns, "x", profile="generic", devices=4, devicesPerPod=2)
    wait_converged(ns, Want("x", 4, 2))

    level = f"{IDENTITY_NAMESPACE}-{uuid.uuid4().hex[:4]}"
    operator_schema, neighbour_schema = f"{level}-operator", f"{level}-neighbour"
    manifests = throttled_identity_manifests(
        level,
        IDENTITY_NAMESPACE,
        {operator_schema: OPERATOR_ACCOUNT, neighbour_schema: NEIGHBOUR_ACCOUNT},
    )
    kubectl("apply", "-f", "-", input=manifests)
    try:
        # The schemas are new: their counters start at zero (absent).
        rejected_before = rejected_requests(operator_schema)
        with NoisyNeighbour(
            faults.identity.neighbour_token, faults.identity.ca, IDENTITY_NAMESPACE
        ) as neighbour:
            patch_fleet(ns, "x", {"devices": 8, "publishInterval": "2s"})
            create_fleet(ns, "y", profile="f2", devices=6, devicesPerPod=3)
            patch_fleet(ns, "y", {"paused": True})
            wait_for(
                lambda: rejected_requests(operator_schema) > rejected_before + 5,
                60,
                interval=1,
                message="the apiserver to answer the operator 429 (APF rejections)",
            )
            throttled_for = 5.0
            time.sleep(throttled_for)  # some more throttling while the changes are pending
        rejected = rejected_requests(operator_schema) - rejected_before
        assert operator.alive(), operator.log_tail()
        # Still in the one-seat priority level, without the neighbour: it converges.
        took = wait_converged(ns, Want("x", 8, 2), Want("y", 6, 3, paused=True))
        assert "429" in operator.logs() or "TooManyRequests" in operator.logs()
    finally:
        kubectl("delete", "--ignore-not-found", "-f", "-", input=manifests)
    report(
        request,
        operator_429s=rejected,
        neighbour_requests=neighbour.sent,
        neighbour_429s=rejected_requests(neighbour_schema),
        converged_after_s=round(took, 1),
    )


def test_watch_connections_cut(faults: FaultEnv, request: pytest.FixtureRequest) -> None:
    ns = faults.namespace
    proxy = CuttingProxy()
    try:
        operator = faults.operator(faults.kubeconfig(proxy.port))
        create_fleet(ns, "w1", profile="generic", devices=4, devicesPerPod=2)
        wait_converged(ns, Want("w1", 4, 2))
        accepted_before = proxy.accepted

        changes: list[Callable[[], object]] = [
            lambda: patch_fleet(ns, "w1", {"devices": 6}),
            lambda: create_fleet(ns, "w2", profile="f2", devices=2, devicesPerPod=1),
            lambda: client.AppsV1Api().delete_namespaced_stateful_set("w1-sim", ns),
            lambda: patch_fleet(ns, "w2", {"devices": 5}),
        ]
        for change in changes:
            assert proxy.cut() > 0, "nothing to cut: the operator holds no connection"
            change()
            time.sleep(1.5)
        # Then a longer cut: connections dropped and new ones refused for a while.
        proxy.refuse = True
        proxy.cut()
        patch_fleet(ns, "w1", {"devices": 12, "devicesPerPod": 4})
        patch_fleet(ns, "w2", {"paused": True})
        time.sleep(8)
        assert operator.alive(), operator.log_tail()
        proxy.refuse = False

        took = wait_converged(ns, Want("w1", 12, 4), Want("w2", 5, 1, paused=True))
        assert operator.alive(), operator.log_tail()
        assert proxy.accepted > accepted_before, "the operator reconnected"
        report(
            request,
            connections_cut=proxy.cut_connections,
            reconnects=proxy.accepted - accepted_before,
            converged_after_s=round(took, 1),
        )
    finally:
        proxy.close()


def test_api_unreachable_longer_than_kopf_retries(
    faults: FaultEnv, request: pytest.FixtureRequest
) -> None:
    """kopf gives up a request after its error backoffs (by default 1+1+2+3+5+8+13+21 = 54 s):
    an API server away for longer must not end the operator. Through the proxy, so the
    shared apiserver itself stays up."""
    ns = faults.namespace
    proxy = CuttingProxy()
    try:
        operator = faults.operator(faults.kubeconfig(proxy.port))
        create_fleet(ns, "long", profile="generic", devices=2, devicesPerPod=1)
        wait_converged(ns, Want("long", 2, 1))
        proxy.refuse = True
        proxy.cut()
        patch_fleet(ns, "long", {"devices": 5})
        unreachable_for = 75.0
        deadline = time.monotonic() + unreachable_for
        while time.monotonic() < deadline:
            assert operator.alive(), f"operator exited:\n{operator.log_tail()}"
            time.sleep(1)
        proxy.refuse = False
        took = wait_converged(ns, Want("long", 5, 1), timeout=60)
        assert operator.alive(), operator.log_tail()
        report(request, unreachable_s=unreachable_for, converged_after_s=round(took, 1))
    finally:
        proxy.close()


def test_operator_killed_mid_reconcile(faults: FaultEnv, request: pytest.FixtureRequest) -> None:
    ns = faults.namespace
    operator = faults.operator()
    kills: list[str] = []

    def kill_when(what: str, check: Callable[[], object]) -> None:
        wait_for(check, 30, interval=0.01, message=what)
        operator.kill()
        kills.append(what)

    # 1. Right after the StatefulSet was created, before the fleet's status was written.
    create_fleet(ns, "k1", profile="truck", devices=4, devicesPerPod=2)
    kill_when("k1's StatefulSet created", lambda: statefulset(ns, "k1") is not None)
    status_at_kill = get_fleet(ns, "k1").get("status") or {}
    operator.start(60)
    wait_converged(ns, Want("k1", 4, 2))

    # 2. During a scale: killed once the StatefulSet took the new size, and the spec changed
    #    again (and another fleet was created) while no operator ran.
    patch_fleet(ns, "k1", {"devices": 12})
    kill_when(
        "k1 scaling",
        lambda: (s := statefulset(ns, "k1")) is not None and s.spec.replicas == 6,
    )
    patch_fleet(ns, "k1", {"devices": 14})
    create_fleet(ns, "k2", profile="generic", devices=3, devicesPerPod=1)
    operator.start(60)

    # 3. The very moment the operator first touches the new fleet (progress annotations).
    kill_when(
        "k2 picked up",
        lambda: any(
            k.startswith(GROUP) for k in get_fleet(ns, "k2")["metadata"].get("annotations") or {}
        ),
    )
    operator.start(60)
    took = wait_converged(ns, Want("k1", 14, 2), Want("k2", 3, 1))
    report(
        request,
        kills=len(kills),
        status_written_before_first_kill=bool(status_at_kill),
        converged_after_s=round(took, 1),
    )


def test_conflicting_updates(faults: FaultEnv, request: pytest.FixtureRequest) -> None:
    ns = faults.namespace
    operator = faults.operator()
    create_fleet(ns, "cf", profile="generic", devices=4, devicesPerPod=2)
    wait_converged(ns, Want("cf", 4, 2))

    # Two spec patches back to back: the last one wins.
    patch_fleet(ns, "cf", {"devices": 6})
    patch_fleet(ns, "cf", {"devices": 8})
    wait_converged(ns, Want("cf", 8, 2))

    # The user keeps patching spec while the operator writes status (pods come and go,
    # so status changes every second): no write clobbers the other.
    stop = threading.Event()
    user_patches = 0

    def user() -> None:
        nonlocal user_patches
        devices = 8
        while not stop.is_set():
            devices = 2 + (devices + 3) % 19
            patch_fleet(ns, "cf", {"devices": devices})
            user_patches += 1
            time.sleep(0.15)

    writer = threading.Thread(target=user)
    writer.start()
    time.sleep(5)
    stop.set()
    writer.join(10)
    last = get_fleet(ns, "cf")["spec"]["devices"]
    wait_converged(ns, Want("cf", last, 2))

    # Hand edits of the owned StatefulSet: replicas drift and a label removed.
    apps = client.AppsV1Api()
    apps.patch_namespaced_stateful_set("cf-sim", ns, {"spec": {"replicas": 17}})
    apps.patch_namespaced_stateful_set(
        "cf-sim", ns, {"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}}
    )
    wait_converged(ns, Want("cf", last, 2), timeout=30)
    apps.patch_namespaced_stateful_set("cf-sim", ns, {"metadata": {"labels": {LABEL_FLEET: None}}})
    wait_converged(ns, Want("cf", last, 2), timeout=30)

    # None of it was an error to the operator.
    assert warnings_for(ns, "cf") == []
    assert "Conflict" not in operator.logs()
    report(request, user_patches=user_patches)
