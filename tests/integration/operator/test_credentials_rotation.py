"""Rotating a signing key reaches the fleets' pods: the real operator, restarted with a new
ingest-token key, rewrites each fleet's Secret and the StatefulSet rolls every pod (their
credentials come from env, read only when a container starts). Restarted with the same key,
it leaves the pods alone.

Its own operator process (the session's one has no signing keys), watching its own
namespaces, on the local kube-apiserver with kube-controller-manager and kwok nodes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devicefleet_common.credentials import token_fleet
from devicefleet_operator.builders import fleet_id
from devicefleet_operator.constants import CREDENTIALS_REVISION_ANNOTATION, GROUP, PLURAL, VERSION
from tests.integration.operator.conftest import (
    create_fleet,
    delete_namespace,
    fleet_pods,
    start_operator,
    statefulset,
)
from tests.support import ServiceProcess, wait_for

RUN = uuid.uuid4().hex[:6]
PATTERN = f"devicefleet-test-rotation-{RUN}-*"  # not the session operator's namespaces
OLD_KEY = b"o" * 32
NEW_KEY = b"n" * 32


@pytest.fixture
def namespace(cluster: client.ApiClient) -> Iterator[str]:
    name = PATTERN.replace("*", uuid.uuid4().hex[:6])
    client.CoreV1Api().create_namespace({"metadata": {"name": name}})
    yield name
    delete_namespace(name)


class Operator:
    """The operator with an ingest-token key file, restarted at will; one process at a time."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.key_file = log_dir / "ingest-token-key"
        self.process: ServiceProcess | None = None
        self.starts = 0

    def restart(self) -> ServiceProcess:
        self.stop()
        self.starts += 1
        logs = self.log_dir / f"run-{self.starts}"
        logs.mkdir()
        self.process = start_operator(
            "operator-rotation", logs, [PATTERN], INGEST_TOKEN_KEY_FILE=str(self.key_file)
        )
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def operator(namespace: str, tmp_path: Path) -> Iterator[Operator]:
    operator = Operator(tmp_path)
    operator.key_file.write_bytes(OLD_KEY)
    yield operator
    # Fleets go while an operator runs: kopf's finalizer (its timers) needs it.
    if operator.process is None:
        operator.restart()
    api = client.CustomObjectsApi()
    for item in api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, item["metadata"]["name"]
        )
    wait_for(
        lambda: not api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"],
        60,
        message="fleets released by the operator",
    )
    operator.stop()


def fleet_token(namespace: str) -> str:
    data = client.CoreV1Api().read_namespaced_secret("sensors-sim-credentials", namespace).data
    return base64.b64decode(data["ingest-token"]).decode()


def rolled_out(namespace: str, replicas: int) -> tuple[str, set[str]] | None:
    """(template's credentials revision, pod uids) once every pod is ready on the
    StatefulSet's current template; None while it rolls."""
    sts = statefulset(namespace, "sensors")
    if sts is None or sts.status.observed_generation != sts.metadata.generation:
        return None
    status = sts.status
    if status.update_revision != status.current_revision or status.ready_replicas != replicas:
        return None
    if status.updated_replicas != replicas:
        return None
    pods = fleet_pods(namespace, "sensors")
    if len(pods) != replicas or any(p.metadata.deletion_timestamp for p in pods):
        return None
    revision = sts.spec.template.metadata.annotations[CREDENTIALS_REVISION_ANNOTATION]
    return revision, {p.metadata.uid for p in pods}


def test_a_rotated_key_rewrites_the_secret_and_rolls_the_pods(
    namespace: str, operator: Operator
) -> None:
    fleet = fleet_id(namespace, "sensors")
    operator.restart()
    create_fleet(namespace, "sensors", profile="generic", devices=4, devicesPerPod=2)
    revision, pods = wait_for(lambda: rolled_out(namespace, 2), 90, message="2 ready pods")
    assert token_fleet(OLD_KEY, fleet_token(namespace)) == fleet

    # The same key again: nothing to roll. Its resume handler and a few drift checks (the
    # observe timer) have run when the pods are looked at.
    process = operator.restart()
    wait_for(
        lambda: (
            "Handler 'reconcile' succeeded" in (logs := process.logs())
            and logs.count("Timer 'observe' succeeded") >= 3
        ),
        30,
        message="the restarted operator's reconcile and drift checks of the fleet",
    )
    assert rolled_out(namespace, 2) == (revision, pods)

    operator.key_file.write_bytes(NEW_KEY)
    operator.restart()
    wait_for(
        lambda: token_fleet(NEW_KEY, fleet_token(namespace)) == fleet,
        30,
        message="the fleet's Secret rewritten with the new key",
    )
    assert token_fleet(OLD_KEY, fleet_token(namespace)) is None

    def new_pods() -> tuple[str, set[str]] | None:
        state = rolled_out(namespace, 2)
        return state if state and state[0] != revision and not state[1] & pods else None

    wait_for(new_pods, 120, message="every pod replaced after the rotation")
    # No new pod before the Secret held the new values (env is read when a container starts).
    secret = client.CoreV1Api().read_namespaced_secret("sensors-sim-credentials", namespace)
    written = max(field.time for field in secret.metadata.managed_fields)
    for pod in fleet_pods(namespace, "sensors"):
        assert pod.metadata.creation_timestamp >= written, (pod.metadata.name, written)
