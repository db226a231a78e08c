"""The operator chart's RBAC grants what the operator needs and nothing like Secrets, asked of
the real API server's authorizer (SubjectAccessReview through `kubectl auth can-i`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.integration.operator.conftest import RUN, helm, kubectl
from tests.support import REPO

# A release name of its own: the ClusterRole and its binding are cluster-wide, and must not
# collide with (or be left behind for) a real release such as `make up`'s "devicefleet".
RELEASE = f"df-rbac-{RUN}"
SA = f"system:serviceaccount:devicefleet-system:{RELEASE}-devicefleet-operator"


@pytest.fixture(scope="module")
def rbac(cluster: client.ApiClient) -> Iterator[None]:
    kubectl("create", "namespace", "devicefleet-system", check=False)
    rendered = helm(
        "template", RELEASE, str(REPO / "charts/devicefleet-operator"),
        "-n", "devicefleet-system",
        "--show-only", "templates/rbac.yaml", "--show-only", "templates/serviceaccount.yaml",
    ).stdout  # fmt: skip
    kubectl("apply", "-n", "devicefleet-system", "-f", "-", input=rendered)
    yield
    kubectl("delete", "-n", "devicefleet-system", "--ignore-not-found", "-f", "-", input=rendered)


def can(verb: str, resource: str, namespace: str = "default") -> bool:
    """``resource`` may name a subresource as ``resource/subresource``."""
    name, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, name, "--as", SA, "-n", namespace]
    if sub:
        args.append(f"--subresource={sub}")
    return kubectl(*args, check=False).stdout.strip() == "yes"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("watch", "devicefleets.iot.devicefleet.io"),
        ("patch", "devicefleets.iot.devicefleet.io/status"),
        ("create", "statefulsets.apps"),
        ("patch", "statefulsets.apps"),
        ("create", "services"),
        ("list", "pods"),
        ("create", "events"),
        # Fleets' credentials Secrets, written blind (values derived from signing keys).
        ("create", "secrets"),
        ("patch", "secrets"),
    ],
)
def test_operator_may_do_its_job(rbac: None, verb: str, resource: str) -> None:
    assert can(verb, resource), f"the operator needs {verb} {resource}"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods/exec"),
        ("delete", "pods"),
        ("delete", "devicefleets.iot.devicefleet.io"),
        ("create", "deployments.apps"),
        ("patch", "nodes"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ],
)
def test_operator_may_not_do_more(rbac: None, verb: str, resource: str) -> None:
    assert not can(verb, resource), f"the operator must not {verb} {resource}"


def test_operator_cannot_read_a_secret(rbac: None) -> None:
    """Not just the authorizer's answer: a real read of a real Secret, impersonating the
    operator's service account, is refused with 403 (and so is listing them)."""
    kubectl("create", "secret", "generic", f"not-yours-{RUN}", "-n", "devicefleet-system",
            "--from-literal=password=hunter2", check=False)  # fmt: skip
    try:
        read = kubectl("get", "secret", f"not-yours-{RUN}", "-n", "devicefleet-system",
                       "-o", "jsonpath={.data}", "--as", SA, check=False)  # fmt: skip
        listed = kubectl("get", "secrets", "-A", "--as", SA, check=False)
    finally:
        kubectl("delete", "secret", f"not-yours-{RUN}", "-n", "devicefleet-system",
                "--ignore-not-found")  # fmt: skip
    assert "forbidden" in read.stderr.lower(), read
    assert read.returncode != 0
    assert "aHVudGVyMg" not in read.stdout  # base64 of the value
    assert "forbidden" in listed.stderr.lower(), listed
    assert listed.returncode != 0
