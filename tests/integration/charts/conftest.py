"""The Helm charts against the local control plane: rendered with the pinned helm, validated
by the real API server (which serves the monitoring.coreos.com CRDs, as a cluster with
kube-prometheus-stack does), and installed on kwok nodes."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.integration.operator.conftest import KUBECONFIG, cluster, helm, kubectl  # noqa: F401
from tests.support import REPO

CHARTS = REPO / "charts"
UMBRELLA = CHARTS / "devicefleet"
COMPONENTS = ["operator", "ingest", "bridge", "processor", "sink", "simulator", "monitoring"]
MONITORING_APIS = [
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
]


def render(chart: str, *args: str, monitoring: bool = True) -> list[dict[str, Any]]:
    """`helm template` offline; with `monitoring`, as if the prometheus-operator API existed."""
    api_versions = [f"--api-versions={api}" for api in MONITORING_APIS] if monitoring else []
    out = helm("template", "devicefleet", str(CHARTS / chart), *api_versions, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc["metadata"]["name"])
    return found


@pytest.fixture(scope="session")
def charts_packaged() -> None:
    """Chart dependencies packaged from the sibling charts (what `make charts` does)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts/charts.sh"), "deps"], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/charts.sh deps failed: {result.stderr}", pytrace=False)
