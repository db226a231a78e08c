"""Every chart: lint --strict, both sides of the prometheus-operator capability gate, the
hardening every pod must have, and server-side validation by the real API server."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.charts.conftest import (
    CHARTS,
    COMPONENTS,
    UMBRELLA,
    helm,
    kinds,
    kubectl,
    render,
)

pytestmark = pytest.mark.usefixtures("charts_packaged")

SERVICES = ["operator", "ingest", "bridge", "processor", "sink"]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]))
    return specs


@pytest.mark.parametrize("chart", ["lib", *COMPONENTS])
def test_component_charts_lint_strict(chart: str) -> None:
    helm("lint", "--strict", str(CHARTS / f"devicefleet-{chart}"))


@pytest.mark.parametrize("values", [[], ["-f", str(UMBRELLA / "values-kind.yaml")]])
def test_umbrella_lints_strict(values: list[str]) -> None:
    helm("lint", "--strict", str(UMBRELLA), *values)


def test_schema_refuses_unknown_and_wrong_values() -> None:
    for bad, message in [
        (["--set", "ingest.replicaCount=many"], "replicaCount"),
        (["--set", "operator.replicaCount=2"], "maximum"),
        (["--set", "kafka.imagee.tag=1"], "imagee"),
        (["--set", "global.serviceMonitor.interval=often"], "interval"),
    ]:
        result = helm("template", "x", str(UMBRELLA), *bad, check=False)
        assert result.returncode != 0, bad
        assert message in result.stderr, (bad, result.stderr)


def test_monitoring_objects_only_where_the_api_exists() -> None:
    without = kinds(render("devicefleet", monitoring=False))
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert kind not in without, f"{kind} rendered without the monitoring.coreos.com API"
    # Dashboards are plain ConfigMaps: Grafana's sidecar needs no operator.
    assert len([n for n in without["ConfigMap"] if "monitoring" in n]) >= 3

    docs = render("devicefleet")
    found = kinds(docs)
    assert sorted(found["ServiceMonitor"]) == sorted(f"devicefleet-{s}" for s in SERVICES)
    assert found["PodMonitor"] == ["devicefleet-simulator"]
    assert len(found["PrometheusRule"]) >= 2
    for doc in docs:
        if doc["kind"] in {"ServiceMonitor", "PodMonitor"}:
            # The job label the shipped alerts and dashboards select on.
            assert doc["spec"]["jobLabel"] == "app.kubernetes.io/name"


def test_prometheus_rules_embed_the_rule_files_verbatim() -> None:
    rules = {
        doc["metadata"]["name"]: doc["spec"]
        for doc in render("devicefleet")
        if doc["kind"] == "PrometheusRule"
    }
    files = sorted((CHARTS / "devicefleet-monitoring/rules").glob("*.yaml"))
    assert files, "no rule files in charts/devicefleet-monitoring/rules"
    for path in files:
        name = f"devicefleet-monitoring-{path.stem}"
        assert rules[name] == yaml.safe_load(path.read_text()), name


def test_every_pod_is_hardened() -> None:
    docs = render("devicefleet")
    specs = pod_specs(docs)
    assert len(specs) >= 9
    for name, template in specs:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"] + pod.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"], name
            assert ctx["readOnlyRootFilesystem"] is True, name
        assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "devicefleet"


def test_each_service_runs_its_own_program() -> None:
    """Images' entrypoints are their console scripts; the bridge shares the ingest image."""
    containers = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
        for doc in render("devicefleet")
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].startswith("devicefleet-")
    }
    assert containers["devicefleet-bridge"]["command"] == ["devicefleet-bridge"]
    assert containers["devicefleet-bridge"]["image"] == containers["devicefleet-ingest"]["image"]
    for name in ("ingest", "processor", "sink", "operator"):
        container = containers[f"devicefleet-{name}"]
        assert "command" not in container, name
        assert container["image"] == f"devicefleet/{name}:0.1.0"


def test_the_bridge_is_ready_only_once_subscribed() -> None:
    """Its readiness is /ready (the broker granted its subscriptions, else what devices
    publish reaches no one), so `helm install --wait` waits for it; its liveness and the
    processor's and sink's probes stay on /metrics."""
    probes = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
        for doc in render("devicefleet")
        if doc["kind"] == "Deployment"
    }
    bridge = probes["devicefleet-bridge"]
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/metrics"
    for name in ("devicefleet-processor", "devicefleet-sink"):
        assert probes[name]["readinessProbe"]["httpGet"]["path"] == "/metrics", name


def test_services_get_credentials_from_the_secret_only() -> None:
    docs = render("devicefleet", "--set", "postgresql.auth.password=not-in-env")
    for name, template in pod_specs(docs):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                assert "not-in-env" not in str(env.get("value", "")), (name, env["name"])
                if env["name"].endswith("DATABASE_URL"):
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "devicefleet-database"


def test_services_find_each_other_by_release() -> None:
    env = {
        (doc["metadata"]["name"], e["name"]): e.get("value")
        for doc in render("devicefleet", "--namespace", "iot")
        if doc["kind"] == "Deployment"
        for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    assert env[("devicefleet-operator", "OPERATOR_INGEST_URL")] == (
        "http://devicefleet-ingest.iot.svc:8080"
    )
    # Qualified names: the operator hands both to fleets' pods in other namespaces.
    assert env[("devicefleet-operator", "OPERATOR_MQTT_HOST")] == "devicefleet-mosquitto.iot.svc"
    assert env[("devicefleet-bridge", "BRIDGE_KAFKA_BOOTSTRAP_SERVERS")] == "devicefleet-kafka:9092"
    external = {
        (doc["metadata"]["name"], e["name"]): e.get("value")
        for doc in render(
            "devicefleet",
            "--set",
            "kafka.enabled=false,global.kafka.bootstrapServers=my-cluster-kafka-bootstrap:9092",
        )
        if doc["kind"] == "Deployment"
        for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    assert external[("devicefleet-sink", "SINK_KAFKA_BOOTSTRAP_SERVERS")] == (
        "my-cluster-kafka-bootstrap:9092"
    )


def test_own_database_instead_of_the_quickstart() -> None:
    docs = render(
        "devicefleet",
        "--set",
        "postgresql.enabled=false,database.url=postgresql://u:p@db.example:5432/iot",
    )
    assert "devicefleet-postgresql" not in kinds(docs).get("StatefulSet", [])
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"] == {"url": "postgresql://u:p@db.example:5432/iot"}
    clash = helm(
        "template", "x", str(UMBRELLA), "--set", "database.url=postgresql://db/iot", check=False
    )
    assert clash.returncode != 0
    assert "postgresql.enabled=false" in clash.stderr


def first_container_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every Deployment's first container's env vars by name (names carry the prefix)."""
    return {
        e["name"]: e
        for d in docs
        if d["kind"] == "Deployment"
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_mqtt_authentication_by_default_and_its_opt_out() -> None:
    """By default the quickstart broker admits no anonymous client and the users come from one
    Secret; auth off renders an anonymous broker and no broker credentials anywhere; your own
    broker with auth needs your Secret (a clear error otherwise)."""
    docs = render("devicefleet")
    conf = named(docs, "ConfigMap", "devicefleet-mosquitto")["data"]["mosquitto.conf"]
    broker = named(docs, "Deployment", "devicefleet-mosquitto")["spec"]["template"]["spec"]
    env = first_container_env(docs)
    assert "allow_anonymous false" in conf
    assert "allow_anonymous true" not in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf
    assert [c["name"] for c in broker["initContainers"]] == ["users"]
    assert "devicefleet-mqtt-users" in kinds(docs)["Secret"]
    assert env["OPERATOR_MQTT_ADMIN_USERNAME"]["value"] == "devicefleet-admin"
    assert env["BRIDGE_MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "devicefleet-mqtt-users",
        "key": "bridge-password",
    }

    docs = render("devicefleet", "--set", "global.mqtt.auth.enabled=false")
    conf = named(docs, "ConfigMap", "devicefleet-mosquitto")["data"]["mosquitto.conf"]
    broker = named(docs, "Deployment", "devicefleet-mosquitto")["spec"]["template"]["spec"]
    assert "allow_anonymous true" in conf
    assert "plugin" not in conf
    assert "initContainers" not in broker
    assert "devicefleet-mqtt-users" not in kinds(docs)["Secret"]
    admin_or_bridge = {
        "OPERATOR_MQTT_ADMIN_USERNAME",
        "BRIDGE_MQTT_USERNAME",
        "BRIDGE_MQTT_PASSWORD",
    }
    assert not admin_or_bridge & set(first_container_env(docs))

    own = "mosquitto.enabled=false,global.mqtt.host=mqtt.example"
    refused = helm("template", "x", str(UMBRELLA), "--set", own, check=False)
    assert refused.returncode != 0
    assert "global.mqtt.auth.existingSecret" in refused.stderr
    docs = render("devicefleet", "--set", f"{own},global.mqtt.auth.existingSecret=my-mqtt")
    assert "devicefleet-mqtt-users" not in kinds(docs)["Secret"]
    env = first_container_env(docs)
    assert env["BRIDGE_MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-mqtt"
    assert "BRIDGE_MQTT_TLS_CA_FILE" not in env


def test_mqtt_tls_with_your_own_brokers_ca() -> None:
    """global.mqtt.tls.caSecret: the bridge and the operator (its admin connection, and for
    every fleet's pods) check the broker against that CA; the quickstart broker has no TLS
    listener, so asking for TLS with it is an error that says so."""
    own = (
        "mosquitto.enabled=false,global.mqtt.host=mqtt.example,global.mqtt.port=8883,"
        "global.mqtt.auth.existingSecret=my-mqtt"
    )
    docs = render("devicefleet", "--set", f"{own},global.mqtt.tls.caSecret=mqtt-ca")
    env = first_container_env(docs)
    ca_file = "/etc/devicefleet/mqtt-tls/ca.crt"
    for name in (
        "BRIDGE_MQTT_TLS_CA_FILE",
        "OPERATOR_MQTT_ADMIN_TLS_CA_FILE",
        "OPERATOR_SIMULATOR_MQTT_TLS_CA_FILE",
    ):
        assert env[name]["value"] == ca_file, name
    for component in ("devicefleet-bridge", "devicefleet-operator"):
        pod = named(docs, "Deployment", component)["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "mqtt-ca"]
        assert volume["secret"]["secretName"] == "mqtt-ca"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["mqtt-ca"]["mountPath"] == "/etc/devicefleet/mqtt-tls"
    refused = helm(
        "template", "x", str(UMBRELLA), "--set", "global.mqtt.tls.caSecret=mqtt-ca", check=False
    )
    assert refused.returncode != 0
    assert "set global.mqtt.tls.selfSignedCA=true" in refused.stderr


def test_quickstart_mqtt_tls_with_the_releases_own_ca(tmp_path: Path) -> None:
    """global.mqtt.tls.selfSignedCA: the chart makes a CA and the broker's certificate for its
    Service's names; the quickstart Mosquitto's one listener speaks TLS with it, and the
    bridge and the operator (for itself and the fleets' pods) trust that CA."""
    docs = render("devicefleet", "--set", "global.mqtt.tls.selfSignedCA=true,global.mqtt.port=8883")
    secret = named(docs, "Secret", "devicefleet-mqtt-tls")
    assert secret["type"] == "kubernetes.io/tls"
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "ca.crt", tmp_path / "tls.crt"],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", tmp_path / "tls.crt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sans = {part.strip() for part in names.splitlines()[1].split(",")}
    assert sans == {
        "DNS:devicefleet-mosquitto",
        "DNS:devicefleet-mosquitto.default",
        "DNS:devicefleet-mosquitto.default.svc",
        "DNS:devicefleet-mosquitto.default.svc.cluster.local",
    }, names
    config = named(docs, "ConfigMap", "devicefleet-mosquitto")["data"]["mosquitto.conf"]
    assert config.splitlines()[:4] == [
        "listener 8883",
        "cafile /mosquitto/tls/ca.crt",
        "certfile /mosquitto/tls/tls.crt",
        "keyfile /mosquitto/tls/tls.key",
    ]
    broker = named(docs, "Deployment", "devicefleet-mosquitto")["spec"]["template"]["spec"]
    assert broker["containers"][0]["ports"] == [{"name": "mqtt", "containerPort": 8883}]
    [tls_volume] = [v for v in broker["volumes"] if v["name"] == "tls"]
    assert tls_volume["secret"]["secretName"] == "devicefleet-mqtt-tls"
    service = named(docs, "Service", "devicefleet-mosquitto")
    assert service["spec"]["ports"][0]["port"] == 8883
    env = first_container_env(docs)
    assert env["BRIDGE_MQTT_PORT"]["value"] == "8883"
    assert env["OPERATOR_MQTT_PORT"]["value"] == "8883"
    for component in ("devicefleet-bridge", "devicefleet-operator"):
        pod = named(docs, "Deployment", component)["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "mqtt-ca"]
        assert volume["secret"]["secretName"] == "devicefleet-mqtt-tls"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    for extra, message in (
        ("mosquitto.enabled=false,global.mqtt.auth.existingSecret=u", "is for the quickstart"),
        ("global.mqtt.tls.caSecret=mqtt-ca", "mqtt.tls.caSecret"),
    ):
        refused = helm(
            "template", "x", str(UMBRELLA), "--set",
            f"global.mqtt.tls.selfSignedCA=true,{extra}", check=False,
        )  # fmt: skip
        assert refused.returncode != 0, extra
        assert message in refused.stderr, refused.stderr


@pytest.fixture(scope="module")
def dry_run_namespace(cluster: Any) -> Iterator[str]:
    name = f"devicefleet-test-dryrun-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.parametrize("chart", ["devicefleet", *(f"devicefleet-{c}" for c in COMPONENTS)])
def test_server_side_validation(chart: str, dry_run_namespace: str) -> None:
    """Every object, the monitoring ones included, accepted by the API server with strict field
    validation (unknown or misplaced fields fail)."""
    # A fleet too, so DeviceFleet objects meet the CRD's schema and CEL rules.
    fleet = "fleets[0].name=trucks,fleets[0].spec.profile=truck,fleets[0].spec.devices=20"
    values = {
        "devicefleet": ["--set", ",".join(f"simulator.{f}" for f in fleet.split(","))],
        "devicefleet-simulator": ["--set", fleet],
    }.get(chart, [])
    out = helm(
        "template",
        f"dry-{chart}",
        str(CHARTS / chart),
        "--namespace",
        dry_run_namespace,
        "--api-versions=monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions=monitoring.coreos.com/v1/PodMonitor",
        "--api-versions=monitoring.coreos.com/v1/PrometheusRule",
        *values,
    ).stdout
    result = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", dry_run_namespace, "-f", "-",
        input=out,
    )  # fmt: skip
    assert "(server dry run)" in result.stdout
