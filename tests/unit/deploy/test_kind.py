"""kind-config.yaml through kind's own loader, defaults and validation (deploy-check, built
against the kind release whose node image it pins), and its port mappings against the chart's
kind values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tests.unit.deploy.conftest import DeployCheck, dig, load_yaml

KIND_CONFIG = "kind-config.yaml"
NODE_IMAGE = re.compile(r"^kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}$")
# NodePort in charts/devicefleet/values-kind.yaml -> the host port kind publishes it on.
HOST_PORTS = {"ingest.service.nodePort": 8080, "mosquitto.service.nodePort": 1883}


def kind_module_version() -> str:
    gomod = (REPO / "devstack/tools/deploy-check/go.mod").read_text()
    match = re.search(r"^\s*sigs\.k8s\.io/kind (v\S+)", gomod, re.MULTILINE)
    assert match, "deploy-check's go.mod does not require sigs.k8s.io/kind"
    return match.group(1)


@pytest.fixture(scope="module")
def checked(deploy_check: DeployCheck) -> dict[str, Any]:
    result: dict[str, Any] = deploy_check.json("kind-config", "--name", "devicefleet", KIND_CONFIG)
    return result


def test_kind_loads_and_validates_the_config(checked: dict[str, Any]) -> None:
    assert checked["validated"] is True
    # kind validates before it provisions: the stub Docker was asked to provision, so the
    # config got through encoding.Load, the defaults and (*Cluster).Validate.
    assert checked["stubDockerRefused"].startswith("docker network"), checked
    roles = [node["role"] for node in checked["config"]["nodes"]]
    assert roles.count("control-plane") == 1


def test_node_image_is_the_pinned_kind_releases_default(
    checked: dict[str, Any], deploy_check: DeployCheck
) -> None:
    default = checked["kindDefaultImage"]
    assert NODE_IMAGE.match(default), default
    for node in checked["config"]["nodes"]:
        assert node["image"] == default, "pin the image kind's own defaults name (image.go)"
    # The checker really is built from the kind release the files name.
    version = kind_module_version()
    assert deploy_check.json("versions")["sigs.k8s.io/kind"] == version
    assert f"kind {version}" in (REPO / KIND_CONFIG).read_text()
    assert version in (REPO / "docs/kind.md").read_text()


def test_host_ports_publish_the_kind_values_node_ports(
    checked: dict[str, Any], kind_values: dict[str, Any]
) -> None:
    wanted = set()
    for key, host_port in HOST_PORTS.items():
        service = dig(kind_values, key.rsplit(".", 1)[0])
        assert service["type"] == "NodePort", key
        wanted.add((dig(kind_values, key), host_port, "127.0.0.1", "TCP"))
    (control_plane,) = [n for n in checked["config"]["nodes"] if n["role"] == "control-plane"]
    mapped = {
        (m["containerPort"], m["hostPort"], m["listenAddress"], m["protocol"])
        for m in control_plane.get("extraPortMappings", [])
    }
    assert mapped == wanted
    for node in checked["config"]["nodes"]:
        if node["role"] != "control-plane":
            assert not node.get("extraPortMappings"), "NodePorts are published by the control plane"


def test_the_file_is_what_kind_reads(checked: dict[str, Any]) -> None:
    raw = load_yaml(REPO / KIND_CONFIG)
    assert raw["kind"] == "Cluster"
    assert raw["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert len(raw["nodes"]) == len(checked["config"]["nodes"])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "nodes:\n- role: control-plane\n  extraPortMappings:\n"
            "  - {containerPort: 30080, hostPort: 8080, listenAddress: 127.0.0.1}\n"
            "  - {containerPort: 30081, hostPort: 8080, listenAddress: 127.0.0.1}\n",
            "port mapping with same listen address, port and protocol already configured",
        ),
        ("nodes:\n- role: control-plane\n  extraPortMapings: []\n", "field extraPortMapings"),
        ("nodes:\n- role: worker\n", "must have at least one control-plane node"),
    ],
)
def test_the_checker_rejects_what_kind_rejects(
    deploy_check: DeployCheck, tmp_path: Path, config: str, message: str
) -> None:
    """The validation path is live: these come back with kind's own messages."""
    path = tmp_path / "kind.yaml"
    path.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n" + config)
    result = deploy_check.run("kind-config", str(path))
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
