"""The real node's pod network stays on this machine: a pod reaches other pods, Services and
cluster DNS, while whatever it sends beyond the machine is dropped by the rule the devstack
scripts install (DEVICEFLEET-EGRESS), and names outside the cluster do not resolve."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.node.conftest import NODE, REAL_NODE, service_image
from tests.integration.operator.conftest import delete_namespace, kubectl
from tests.support import wait_for

NAMESPACE = f"devicefleet-test-net-{uuid.uuid4().hex[:6]}"
# TEST-NET-2 (RFC 5737): documentation addresses, no host there anywhere; the probe's packets
# must be dropped on this machine before they could be routed out.
OUTSIDE = "198.51.100.7"
EGRESS_CHAIN = "DEVICEFLEET-EGRESS"

PROBE = f"""
import json, socket
def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({{
    "outside": tcp("{OUTSIDE}", 80),
    "apiserver_service": tcp("kubernetes.default.svc.cluster.local", 443),
    "cluster_dns": resolve("kubernetes.default.svc.cluster.local"),
    "outside_name": resolve("pypi.org"),
}}))
"""


def drop_counter() -> int:
    """Packets the egress chain's DROP rule for traffic from the bridge has dropped."""
    out = subprocess.run(
        ["iptables", "-w", "5", "-t", "mangle", "-L", EGRESS_CHAIN, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "DROP" in fields and NODE["NODE_BRIDGE"] in fields and "never reach" in line:
            return int(fields[0])
    raise AssertionError(f"no DROP rule for {NODE['NODE_BRIDGE']} in {EGRESS_CHAIN}:\n{out}")


@pytest.fixture(scope="module")
def namespace(real_node: dict[str, Any]) -> Iterator[str]:
    client.CoreV1Api().create_namespace({"metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    delete_namespace(NAMESPACE)


def test_egress_rule_is_installed_before_any_pod_traffic() -> None:
    def rules(chain: str) -> list[str]:
        return subprocess.run(
            ["iptables", "-w", "5", "-t", "mangle", "-S", chain],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()

    # First in mangle FORWARD, which packets pass before the filter table, where kube-proxy
    # puts its own rules (ACCEPTs among them) at the top.
    assert rules("FORWARD")[1] == f"-A FORWARD -j {EGRESS_CHAIN}", rules("FORWARD")
    chain = "\n".join(rules(EGRESS_CHAIN))
    bridge = NODE["NODE_BRIDGE"]
    assert re.search(rf"-A {EGRESS_CHAIN} -i {bridge} -o {bridge} -j RETURN", chain)
    assert re.search(rf"-A {EGRESS_CHAIN} -i {bridge} .*-j DROP", chain)
    # The apiserver listens on all addresses for the pods' sake: its port is closed to every
    # interface but lo and the bridge, ahead of anything else in INPUT.
    assert rules("INPUT")[1] == "-A INPUT -j DEVICEFLEET-INPUT", rules("INPUT")
    guard = "\n".join(rules("DEVICEFLEET-INPUT"))
    port = NODE["KUBE_APISERVER_PORT"]
    assert f"-A DEVICEFLEET-INPUT -i lo -p tcp -m tcp --dport {port} -j RETURN" in guard
    assert f"-A DEVICEFLEET-INPUT -i {bridge} -p tcp -m tcp --dport {port} -j RETURN" in guard
    assert re.search(rf"-A DEVICEFLEET-INPUT -p tcp -m tcp --dport {port} .*-j DROP", guard)
    # A ClusterIP is routed to the bridge, so it never leaves the machine, kube-proxy or not.
    service_ip = NODE["KUBE_SERVICE_CIDR"].rsplit(".", 1)[0] + ".77"
    route = subprocess.run(
        ["ip", "route", "get", service_ip], capture_output=True, text=True, check=True
    ).stdout
    assert f"dev {bridge}" in route, route


def test_pod_reaches_the_cluster_but_nothing_beyond_the_machine(namespace: str) -> None:
    before = drop_counter()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "egress-probe"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": REAL_NODE,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "probe",
                    "image": service_image("simulator"),
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", PROBE],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    client.CoreV1Api().create_namespaced_pod(namespace, pod)
    wait_for(
        lambda: (
            client.CoreV1Api().read_namespaced_pod("egress-probe", namespace).status.phase
            in ("Succeeded", "Failed")
        ),
        90,
        interval=1,
        message="the probe pod to finish",
    )
    # The logs come through the apiserver from kubelet's API on the node.
    result = json.loads(kubectl("logs", "egress-probe", "-n", namespace).stdout.strip())
    assert result["outside"] != "connected", result
    # Only cluster names resolve: CoreDNS forwards nothing to the machine's resolver.
    assert result["outside_name"] == "gaierror", result
    assert result["apiserver_service"] == "connected", result
    assert result["cluster_dns"] == NODE["KUBE_SERVICE_CIDR"].rsplit(".", 1)[0] + ".1", result
    # The probe's SYNs to the outside address were dropped by our rule (it retransmits, so
    # at least one packet was counted), not merely unanswered.
    assert drop_counter() > before
