"""skaffold.yaml against skaffold's published JSON schema for its apiVersion (taken from the
skaffold Go module by devstack/tools/install.sh), and against the chart it installs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from jsonschema import validators

from tests.support import REPO
from tests.unit.deploy.conftest import dig, install_pin, load_yaml

# Image values of the umbrella chart (charts/devicefleet/values.yaml); the bridge runs the
# ingest image.
IMAGE_KEYS = [
    "operator.image",
    "operator.simulator.image",
    "ingest.image",
    "bridge.image",
    "processor.image",
    "sink.image",
    "bootstrap.image",
]


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(REPO / "skaffold.yaml")
    return config


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in cls(schema).iter_errors(document)
    ]


def template_name(image: str) -> str:
    """skaffold's template variable suffix for an artifact (docs: deployers/helm.md)."""
    return re.sub(r"[/\-.:]", "_", image)


def test_api_version_is_the_schema_installed(
    skaffold: dict[str, Any], skaffold_schema: dict[str, Any]
) -> None:
    assert skaffold["apiVersion"] == f"skaffold/{install_pin('SKAFFOLD_SCHEMA')}"
    assert skaffold["kind"] == "Config"


def test_skaffold_yaml_validates_against_the_published_schema(
    skaffold: dict[str, Any], skaffold_schema: dict[str, Any]
) -> None:
    assert schema_errors(skaffold_schema, skaffold) == []


@pytest.mark.parametrize(
    "typo",
    [
        lambda c: c["build"]["artifacts"][0]["docker"].update(dockerfil="x"),
        lambda c: c["deploy"]["helm"]["releases"][0].update(chartPth="x"),
        lambda c: c["portForward"][0].update(localport=1),
    ],
)
def test_the_schema_catches_typos(
    skaffold: dict[str, Any], skaffold_schema: dict[str, Any], typo: Any
) -> None:
    """The schema is strict (additionalProperties: false), so a misspelt key fails."""
    broken = copy.deepcopy(skaffold)
    typo(broken)
    assert schema_errors(skaffold_schema, broken)


def test_artifacts_are_the_chart_images(
    skaffold: dict[str, Any], chart_values: dict[str, Any]
) -> None:
    build = skaffold["build"]
    assert build["local"]["push"] is False, "kind loads local images; nothing is pushed"
    artifacts = {a["image"]: a for a in build["artifacts"]}
    assert len(artifacts) == len(build["artifacts"])
    chart_images = {dig(chart_values, f"{key}.repository") for key in IMAGE_KEYS}
    assert set(artifacts) == chart_images
    assert dig(chart_values, "bridge.image.repository") == dig(
        chart_values, "ingest.image.repository"
    )
    for image, artifact in artifacts.items():
        assert artifact["context"] == ".", "the uv workspace (repo root) is the build context"
        dockerfile = REPO / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        # devicefleet/ingest is built from services/ingest/Dockerfile, etc.
        assert dockerfile.parent.name == image.split("/", 1)[1], (image, dockerfile)


def test_helm_release_sets_every_image_to_the_built_one(
    skaffold: dict[str, Any], chart_values: dict[str, Any]
) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert release["name"] == "devicefleet"
    assert load_yaml(REPO / release["chartPath"] / "Chart.yaml")["name"] == "devicefleet"
    assert release["namespace"] == "devicefleet"
    assert release["createNamespace"] is True
    assert release["valuesFiles"] == ["charts/devicefleet/values-kind.yaml"]
    for path in release["valuesFiles"]:
        assert (REPO / path).is_file(), path
    expected = {}
    for key in IMAGE_KEYS:
        dig(chart_values, f"{key}.tag")  # the key exists in the chart
        name = template_name(dig(chart_values, f"{key}.repository"))
        expected[f"{key}.repository"] = f"{{{{.IMAGE_REPO_{name}}}}}"
        expected[f"{key}.tag"] = f"{{{{.IMAGE_TAG_{name}}}}}"
    assert release["setValueTemplates"] == expected
    artifacts = {template_name(a["image"]) for a in skaffold["build"]["artifacts"]}
    used = set(re.findall(r"IMAGE_(?:REPO|TAG)_(\w+)", str(release["setValueTemplates"])))
    assert used == artifacts, "every built image is deployed, and only built images are"


def test_port_forwards_reach_grafana_and_avoid_kinds_host_ports(
    skaffold: dict[str, Any],
) -> None:
    forwards = skaffold["portForward"]
    grafana = {
        "resourceType": "service",
        "resourceName": "kube-prometheus-stack-grafana",
        "namespace": "monitoring",
        "port": 80,
        "localPort": 3000,
    }
    assert grafana in forwards
    kind_config = load_yaml(REPO / "kind-config.yaml")
    host_ports = {
        m["hostPort"] for n in kind_config["nodes"] for m in n.get("extraPortMappings", [])
    }
    local_ports = [f["localPort"] for f in forwards]
    assert len(set(local_ports)) == len(local_ports)
    assert not host_ports & set(local_ports), "a forward would collide with kind's mapping"
