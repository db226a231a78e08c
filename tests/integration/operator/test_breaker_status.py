"""Breaker state in the fleet's status, from real simulator processes.

kwok runs no containers, so the test plays the kubelet: for every pod of the fleet it starts
a real simulator process with that pod's environment, serving /status on the pod's 127.x IP.
The operator cannot tell the difference. Ingest is then killed and restarted for real.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from devicefleet_operator.constants import POD_INDEX_LABEL, STATUS_PORT
from tests.integration.conftest import Pipeline
from tests.integration.operator.conftest import (
    create_fleet,
    fleet_pods,
    kubectl,
    wait_replicas,
    wait_status,
)
from tests.support import ServiceProcess, wait_for


def pod_environment(namespace: str, fleet: str, pod: Any) -> dict[str, str]:
    """What the kubelet would give the container: the template's env, the downward API."""
    sts = client.AppsV1Api().read_namespaced_stateful_set(f"{fleet}-sim", namespace)
    env = {e.name: e.value for e in sts.spec.template.spec.containers[0].env if e.value}
    env["SIMULATOR_POD_INDEX"] = pod.metadata.labels[POD_INDEX_LABEL]
    env["SIMULATOR_STATUS_HOST"] = pod.status.pod_ip
    return env


def breaker(namespace: str, fleet: str) -> dict[str, Any]:
    return dict(
        wait_status(namespace, fleet, lambda s: "circuitBreaker" in s)["status"]["circuitBreaker"]
    )


def test_breaker_transitions_show_in_kubectl_get(
    namespace: str,
    pipeline: Pipeline,
    private_ingest: ServiceProcess,
) -> None:
    ingest_url = (private_ingest.health_url or "").removesuffix("/health")
    create_fleet(
        namespace,
        "trucks",
        profile="truck",
        devices=4,
        devicesPerPod=2,
        transport="http",
        publishInterval="200ms",
        endpoints={"ingestUrl": ingest_url},
        resilience={
            "retry": {"maxAttempts": 1, "base": "100ms", "max": "100ms"},
            "circuitBreaker": {"failMax": 2, "resetTimeout": "3s"},
        },
    )
    wait_replicas(namespace, "trucks", 2)
    wait_for(
        lambda: len([p for p in fleet_pods(namespace, "trucks") if p.status.pod_ip]) == 2,
        60,
        message="2 pods with IPs",
    )
    simulators = []
    try:
        for pod in fleet_pods(namespace, "trucks"):
            env = pod_environment(namespace, "trucks", pod) | {"SIMULATOR_LOG_LEVEL": "INFO"}
            simulators.append(
                ServiceProcess(
                    f"sim-{pod.metadata.name}",
                    ["devicefleet-simulator"],
                    env,
                    pipeline.log_dir,
                    health_url=f"http://{pod.status.pod_ip}:{STATUS_PORT}/health",
                ).start()
            )

        running = wait_status(
            namespace,
            "trucks",
            lambda s: s.get("phase") == "Running",
            message="phase Running with both breakers closed",
        )["status"]
        assert running["circuitBreaker"]["summary"] == "2/0/0"
        assert running["devices"] == 4  # 2 + 2 devices, as the pods themselves report
        assert kubectl("get", "df", "trucks", "-n", namespace).stdout.split()[-3:-1] == [
            "True",
            "2/0/0",
        ]

        private_ingest.kill()

        def tripped(s: dict[str, Any]) -> bool:
            # Open, or half-open while probing: no publisher may still look closed.
            b = s.get("circuitBreaker", {})
            return (
                b.get("closed") == 0
                and b.get("open", 0) >= 1
                and (b.get("open", 0) + b.get("halfOpen", 0) == 2)
            )

        opened = wait_status(
            namespace, "trucks", tripped, timeout=10, message="both breakers open within 10 s"
        )["status"]
        assert opened["phase"] == "Degraded"
        conditions = {c["type"]: c for c in opened["conditions"]}
        assert conditions["PublisherHealthy"]["status"] == "False"
        assert conditions["PublisherHealthy"]["reason"] == "BreakersOpen"
        breaker_column = kubectl("get", "df", "trucks", "-n", namespace).stdout.split()[-2]
        assert breaker_column.startswith("0/"), breaker_column
        events = kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=CircuitBreakerOpened"
        ).stdout
        assert "CircuitBreakerOpened" in events

        private_ingest.start()
        closed = wait_status(
            namespace,
            "trucks",
            lambda s: s.get("phase") == "Running",
            30,
            message="breakers closed again",
        )["status"]
        assert closed["circuitBreaker"]["summary"] == "2/0/0"
        wait_status(
            namespace,
            "trucks",
            lambda s: s["messages"]["buffered"] == 0,
            30,
            message="every buffered reading delivered",
        )
    finally:
        for sim in simulators:
            sim.stop()
