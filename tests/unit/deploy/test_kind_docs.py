"""docs/kind.md's commands name only things that exist: repository paths, images (with the
Dockerfiles skaffold builds them from), chart values, namespaces, NodePorts and ports."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest

from tests.support import REPO
from tests.unit.deploy.conftest import dig, load_yaml, umbrella_values

DOC = REPO / "docs" / "kind.md"
PATH_TOKEN = re.compile(
    r"(?<![\w/.-])((?:charts|services|operator|examples|docs|devstack|crds)/[\w./*-]*\w"
    r"|kind-config\.yaml|skaffold\.yaml)"
)
IMAGE_TOKEN = re.compile(r"(?<![\w/.-])(devicefleet/[a-z-]+)")


def code_blocks() -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)


def commands() -> list[list[str]]:
    """Every command line of the shell blocks, continuation lines joined, split like a shell."""
    out = []
    for block in code_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not re.match(r"^[A-Z]+\s+[A-Z]+", line):  # skip console output
                out.append(shlex.split(line.split(";")[0], comments=True))
    return [c for c in out if c]


def flag_values(cmd: list[str], *flags: str) -> list[str]:
    values = []
    for i, word in enumerate(cmd):
        for flag in flags:
            if word == flag and i + 1 < len(cmd):
                values.append(cmd[i + 1])
            elif word.startswith(flag + "="):
                values.append(word.split("=", 1)[1])
    return values


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(REPO / "skaffold.yaml")
    return config


def test_every_path_in_the_commands_exists() -> None:
    paths = {p for block in code_blocks() for p in PATH_TOKEN.findall(block)}
    assert "kind-config.yaml" in paths
    assert "charts/devicefleet/values-kind.yaml" in paths
    for path in sorted(paths):
        assert list(REPO.glob(path)), f"docs/kind.md names {path}, which does not exist"


def test_images_are_built_from_the_dockerfiles_skaffold_uses(skaffold: dict[str, Any]) -> None:
    dockerfiles = {a["image"]: a["docker"]["dockerfile"] for a in skaffold["build"]["artifacts"]}
    named = {i for block in code_blocks() for i in IMAGE_TOKEN.findall(block)}
    assert named <= set(dockerfiles), named - set(dockerfiles)
    built = {}
    for cmd in commands():
        if cmd[:2] == ["docker", "build"]:
            (tag,) = flag_values(cmd, "-t")
            (dockerfile,) = flag_values(cmd, "-f")
            assert cmd[-1] == ".", "the build context is the repository root"
            built[tag.split(":")[0]] = dockerfile
    assert built == dockerfiles
    (load,) = [c for c in commands() if c[:3] == ["kind", "load", "docker-image"]]
    assert flag_values(load, "--name") == ["devicefleet"]
    images = [w for w in load[3:] if ":" in w]
    assert {i.split(":")[0] for i in images} == set(built)


def test_helm_install_sets_existing_values_and_every_image_tag(skaffold: dict[str, Any]) -> None:
    values = umbrella_values()
    installs = [c for c in commands() if c[:3] == ["helm", "install", "devicefleet"]]
    assert len(installs) == 1
    (install,) = installs
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert install[3] == release["chartPath"]
    assert flag_values(install, "-f") == release["valuesFiles"]
    assert flag_values(install, "-n", "--namespace") == [release["namespace"]]
    set_keys = {s.split("=", 1)[0] for s in flag_values(install, "--set")}
    for key in set_keys:
        dig(values, key)  # KeyError: the chart has no such value
    tag_keys = {k for k in release["setValueTemplates"] if k.endswith(".tag")}
    assert set_keys == tag_keys, "the manual path sets the same image tags skaffold sets"


def test_namespaces_and_cluster_name(skaffold: dict[str, Any]) -> None:
    namespaces = {
        ns for c in commands() for ns in flag_values(c, "-n", "--namespace") if c[0] != "docker"
    }
    assert namespaces == {"devicefleet", "monitoring"}
    create = [c for c in commands() if c[:3] == ["kind", "create", "cluster"]]
    assert create == [
        ["kind", "create", "cluster", "--config", "kind-config.yaml", "--name", "devicefleet"]
    ]
    contexts = {v for c in commands() for v in flag_values(c, "--context", "--kube-context")}
    assert contexts == {"kind-devicefleet"}


def test_kube_prometheus_stack_flags() -> None:
    (install,) = [c for c in commands() if c[:3] == ["helm", "install", "kube-prometheus-stack"]]
    assert flag_values(install, "--namespace", "-n") == ["monitoring"]
    sets = set(flag_values(install, "--set"))
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert f"prometheus.prometheusSpec.{kind}SelectorNilUsesHelmValues=false" in sets
    assert "grafana.sidecar.dashboards.searchNamespace=ALL" in sets
    monitoring = load_yaml(REPO / "charts/devicefleet-monitoring/values.yaml")["dashboards"]
    assert f"grafana.sidecar.dashboards.folderAnnotation={monitoring['folderAnnotation']}" in sets


def test_ports_and_node_ports_match_the_files(skaffold: dict[str, Any]) -> None:
    text = DOC.read_text()
    kind_config = load_yaml(REPO / "kind-config.yaml")
    mappings = {
        m["containerPort"]: m["hostPort"]
        for n in kind_config["nodes"]
        for m in n.get("extraPortMappings", [])
    }
    kind_values = load_yaml(REPO / "charts/devicefleet/values-kind.yaml")
    for key in ("ingest.service.nodePort", "mosquitto.service.nodePort"):
        node_port = dig(kind_values, key)
        assert f"NodePort {node_port}" in text
        assert f"127.0.0.1:{mappings[node_port]}" in text
    forwards = {
        (f["resourceName"], f["namespace"], f["localPort"], f["port"])
        for f in skaffold["portForward"]
    }
    for cmd in commands():
        if "port-forward" in cmd:
            (ns,) = flag_values(cmd, "-n")
            svc = next(w for w in cmd if w.startswith("svc/"))
            local, remote = next(w for w in cmd if re.fullmatch(r"\d+:\d+", w)).split(":")
            assert (svc[4:], ns, int(local), int(remote)) in forwards
    used = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    assert used <= set(mappings.values()) | {f[2] for f in forwards}


def test_kind_version_and_dashboard_titles() -> None:
    text = DOC.read_text()
    gomod = (REPO / "devstack/tools/deploy-check/go.mod").read_text()
    kind_version = re.search(r"sigs\.k8s\.io/kind (v\S+)", gomod)
    assert kind_version
    assert f"kind | {kind_version.group(1)}" in text
    titles = {
        json.loads(p.read_text())["title"]
        for p in (REPO / "charts/devicefleet-monitoring/dashboards").glob("*.json")
    }
    mentioned = set(re.findall(r"\*\*(DeviceFleet / [^*]+)\*\*", text))
    assert mentioned == titles
