"""Security objects of the charts (docs/security.md): each service's NetworkPolicy selects exactly
its own pods and opens only the ports it serves (egress optional), the API server accepts them;
the umbrella's signing keys reach the operator (both) and ingest (the token key only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.integration.charts.conftest import CHARTS, UMBRELLA, helm, kubectl, render

pytestmark = pytest.mark.usefixtures("charts_packaged")

SERVICES = ["operator", "ingest", "bridge", "processor", "sink"]
MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_each_service_gets_a_policy_selecting_only_its_pods() -> None:
    docs = render("devicefleet")
    policies = by_kind(docs, "NetworkPolicy")
    deployments = by_kind(docs, "Deployment")
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    assert set(policies) == {f"devicefleet-{s}" for s in SERVICES}
    for service in SERVICES:
        name = f"devicefleet-{service}"
        selector = policies[name]["spec"]["podSelector"]["matchLabels"]
        assert [p for p, labels in pods.items() if selects(selector, labels)] == [name], service


@pytest.mark.parametrize("service", SERVICES)
def test_ingress_only_to_the_ports_served(service: str) -> None:
    docs = render("devicefleet")
    policy = by_kind(docs, "NetworkPolicy")[f"devicefleet-{service}"]["spec"]
    ports = container_ports(by_kind(docs, "Deployment")[f"devicefleet-{service}"])
    assert policy["policyTypes"] == ["Ingress"]  # egress stays open unless asked for
    rules = [([p["port"] for p in rule["ports"]], rule.get("from")) for rule in policy["ingress"]]
    for named, _ in rules:
        assert set(named) <= set(ports), (named, ports)  # named ports the pod really has
    if service == "ingest":
        # Devices anywhere post readings; /metrics (same port) from the monitoring namespace.
        assert rules == [(["http"], None), (["http"], MONITORING)]
    else:
        # Nothing but the metrics port, from the monitoring namespace (the operator's liveness
        # port is probed by the kubelet, from the node, which a policy does not block).
        assert rules == [(["metrics"], MONITORING)]


def test_egress_when_enabled_allows_dns_and_the_configured_ports_only() -> None:
    docs = render(
        "devicefleet",
        "--set", "processor.networkPolicy.egress.enabled=true",
        "--set", "ingest.networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.devices=yes",
    )  # fmt: skip
    policies = by_kind(docs, "NetworkPolicy")
    processor = policies["devicefleet-processor"]["spec"]
    assert processor["policyTypes"] == ["Ingress", "Egress"]
    assert processor["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"ports": [{"port": 9092, "protocol": "TCP"}, {"port": 5432, "protocol": "TCP"}]},
    ]
    assert policies["devicefleet-sink"]["spec"]["policyTypes"] == ["Ingress"]
    ingest = policies["devicefleet-ingest"]["spec"]["ingress"]
    assert ingest[0]["from"] == [{"namespaceSelector": {"matchLabels": {"devices": "yes"}}}]


def test_policies_can_be_turned_off() -> None:
    off = [f"--set={s}.networkPolicy.enabled=false" for s in SERVICES]
    assert by_kind(render("devicefleet", *off), "NetworkPolicy") == {}


@pytest.fixture(scope="module")
def dry_run_namespace(cluster: Any) -> Iterator[str]:
    name = f"devicefleet-test-netpol-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_api_server_accepts_the_policies_with_egress(dry_run_namespace: str) -> None:
    egress = [f"--set={s}.networkPolicy.egress.enabled=true" for s in SERVICES]
    extra = "operator.networkPolicy.egress.extra[0].to[0].ipBlock.cidr=10.0.0.0/8"
    out = helm(
        "template", "netpol", str(UMBRELLA), "--namespace", dry_run_namespace, *egress,
        "--set", extra,
    ).stdout  # fmt: skip
    policies = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "NetworkPolicy"]
    assert len(policies) == len(SERVICES)
    result = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", dry_run_namespace, "-f", "-",
        input=yaml.safe_dump_all(policies),
    )  # fmt: skip
    assert result.stdout.count("networkpolicy.networking.k8s.io/") == len(SERVICES)
    assert "(server dry run)" in result.stdout


def test_signing_keys_mounted_where_needed_only() -> None:
    docs = render("devicefleet")
    [secret] = [
        s for s in by_kind(docs, "Secret").values() if "signing-keys" in s["metadata"]["name"]
    ]
    assert set(secret["data"]) == {"ingest-token-key", "mqtt-password-key"}
    deployments = by_kind(docs, "Deployment")
    expected = {
        "operator": (["ingest-token-key", "mqtt-password-key"],
                     {"OPERATOR_INGEST_TOKEN_KEY_FILE", "OPERATOR_MQTT_PASSWORD_KEY_FILE"}),
        "ingest": (["ingest-token-key"], {"INGEST_AUTH_TOKEN_KEY_FILE"}),
        "bridge": (None, set()),
        "processor": (None, set()),
        "sink": (None, set()),
    }  # fmt: skip
    for service, (keys, variables) in expected.items():
        pod = deployments[f"devicefleet-{service}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert {k for k in env if k.endswith("_KEY_FILE")} == variables, service
        if keys is None:
            assert "signing-keys" not in volumes, service
            continue
        source = volumes["signing-keys"]["secret"]
        assert source["secretName"] == secret["metadata"]["name"]
        assert [i["key"] for i in source["items"]] == keys
        assert all(env[v].startswith("/etc/devicefleet/keys/") for v in variables)


def test_own_signing_keys_secret_and_auth_off() -> None:
    docs = render(
        "devicefleet",
        "--set", "global.signingKeys.existingSecret=my-keys",
        "--set", "ingest.auth.enabled=false",
    )  # fmt: skip
    assert not [s for s in by_kind(docs, "Secret") if "signing-keys" in s]
    deployments = by_kind(docs, "Deployment")
    operator = deployments["devicefleet-operator"]["spec"]["template"]["spec"]
    [keys] = [v for v in operator["volumes"] if v["name"] == "signing-keys"]
    assert keys["secret"]["secretName"] == "my-keys"
    ingest = deployments["devicefleet-ingest"]["spec"]["template"]["spec"]
    assert "signing-keys" not in {v["name"] for v in ingest["volumes"]}
    assert "INGEST_AUTH_TOKEN_KEY_FILE" not in {e["name"] for e in ingest["containers"][0]["env"]}


def test_component_chart_alone_names_the_release_secret() -> None:
    docs = render("devicefleet-ingest")
    [deployment] = by_kind(docs, "Deployment").values()
    [keys] = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "signing-keys"
    ]
    assert keys["secret"]["secretName"] == "devicefleet-signing-keys"
    assert helm("lint", "--strict", str(CHARTS / "devicefleet-ingest")).returncode == 0
