"""The local stack's real node (containerd + kubelet + kube-proxy + CoreDNS): pods that run
the locally built images. Missing node or images → the session fails (never skips)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.operator.conftest import KUBECONFIG, cluster, helm, kubectl  # noqa: F401
from tests.support import REPO

K8S_PORTS = REPO / "devstack" / "k8s" / "ports.env"
VALUES_LOCAL = REPO / "devstack" / "k8s" / "values-local.yaml"
REAL_NODE = {"devicefleet.io/node-kind": "real"}


def k8s_ports() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in K8S_PORTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


NODE = k8s_ports()


def service_image(name: str) -> str:
    """A DeviceFleet image as the charts name it: tagged with the umbrella chart's appVersion."""
    chart = yaml.safe_load((REPO / "charts/devicefleet/Chart.yaml").read_text())
    return f"docker.io/devicefleet/{name}:{chart['appVersion']}"


def chart_image_refs() -> list[str]:
    """What the umbrella chart runs with values-local.yaml: the DeviceFleet images and the
    quickstart stand-ins."""
    local = yaml.safe_load(VALUES_LOCAL.read_text())
    refs = [
        service_image(name)
        for name in ("operator", "simulator", "ingest", "processor", "sink", "bootstrap")
    ]
    for quickstart in ("kafka", "mosquitto", "postgresql"):
        image = local[quickstart]["image"]
        refs.append(f"{image['repository']}:{image['tag']}")
    return refs


@pytest.fixture(scope="session")
def real_node(cluster: client.ApiClient) -> dict[str, Any]:  # noqa: F811
    """The Ready real node, with every image the chart needs already in its containerd."""
    nodes = client.CoreV1Api().list_node(label_selector="devicefleet.io/node-kind=real").items
    if not nodes:
        pytest.fail(
            "no real node (label devicefleet.io/node-kind=real) in the local cluster: start it "
            "with `bash devstack/up.sh` as root (DEVSTACK_NODE=on)",
            pytrace=False,
        )
    node = nodes[0]
    ready = {c.type: c.status for c in node.status.conditions or []}.get("Ready")
    if ready != "True":
        pytest.fail(f"node {node.metadata.name} is not Ready ({ready})", pytrace=False)
    present = {name for image in node.status.images or [] for name in image.names or []}
    missing = [ref for ref in chart_image_refs() if ref not in present]
    if missing:
        pytest.fail(
            f"images missing on {node.metadata.name}: {missing}; build and import them with "
            "`bash devstack/images/build.sh all`",
            pytrace=False,
        )
    return {"name": node.metadata.name, "ip": NODE["NODE_IP"]}


def pod_ips(namespace: str, selector: str) -> list[str]:
    pods = client.CoreV1Api().list_namespaced_pod(namespace, label_selector=selector).items
    return [p.status.pod_ip for p in pods if p.status.pod_ip and p.status.phase == "Running"]
