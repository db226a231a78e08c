"""Every query of every generated Grafana dashboard returns data from the local Prometheus,
and the chart's rules are loaded there and healthy.

The data comes from real processes this module starts and registers in Prometheus with the
labels a ServiceMonitor gives in Kubernetes (job devicefleet-<service>, namespace
devicefleet-test-<run>, pod): the session's pipeline (ingest, bridge, processor, sink), one
simulator per profile over MQTT and HTTP with faults (duplicates, malformed readings, so dead
letters and rejections exist), one HTTP simulator pointed at a closed port (its breaker opens,
it retries and buffers), and an operator reconciling one DeviceFleet on the kwok nodes. Each
panel's ``$namespace`` becomes this session's namespace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devicefleet_common.schemas import Profile
from devicefleet_operator.constants import GROUP, PLURAL, VERSION
from tests.integration.conftest import (
    PROMETHEUS_SD_DIR,
    PROMETHEUS_URL,
    Pipeline,
    scrape_target,
)
from tests.integration.operator.conftest import KUBECONFIG, STATE, fleet_body, kubectl
from tests.support import REPO, ServiceProcess, free_port, wait_for

CHART = REPO / "charts" / "devicefleet-monitoring"
# Where devstack/components/prometheus.sh copies the chart's rule files.
LOADED_RULES = STATE / "conf/prometheus/rules/chart"
JOBS = {
    f"devicefleet-{s}" for s in ("ingest", "bridge", "processor", "sink", "operator", "simulator")
}
# Panels marked INCIDENT_ONLY in scripts/dashboards.py have series only while an alert fires;
# their queries must still be valid PromQL. Keep this set small (docs/dashboards.md).
INCIDENT_ONLY = "[incident-only]"
EXPECTED_INCIDENT_ONLY = {("devicefleet-slo", "Firing alerts")}
# Grafana's built-in variables, as Grafana would expand them for a 1 h range on a 5 s scrape.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$__range_s": "3600",
}
DATA_TIMEOUT = 180.0  # + target discovery and setup: within the 300 s pytest timeout


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    incident_only: bool

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref_id}]"


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((CHART / "dashboards").glob("*.json"))
    }


def panel_queries() -> list[PanelQuery]:
    out = []
    for uid, board in dashboards().items():
        panels = []
        for panel in board["panels"]:
            panels += panel.get("panels", []) if panel["type"] == "row" else [panel]
        for panel in panels:
            incident_only = panel.get("description", "").startswith(INCIDENT_ONLY)
            for target in panel["targets"]:
                out.append(
                    PanelQuery(uid, panel["title"], target["refId"], target["expr"], incident_only)
                )
    return out


def substitute(expr: str, namespace: str) -> str:
    """The query Grafana would send with ``$namespace`` = this one namespace."""
    assert re.fullmatch(r"[a-z0-9-]+", namespace), namespace  # no regex escaping needed
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    expr = expr.replace("$namespace", namespace).replace("${namespace}", namespace)
    unknown = re.findall(r"\$\{?\w+", expr)
    assert not unknown, f"unknown Grafana variables {unknown} in {expr}"
    return expr


def prometheus(path: str, **params: str) -> Any:
    response = httpx.get(f"{PROMETHEUS_URL}{path}", params=params, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{path} {params}: {body.get('error', body)}"
    return body["data"]


def has_data(expr: str) -> str | None:
    """None when the instant query returns at least one sample that is a number, else why not."""
    response = httpx.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        return f"query error: {body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    else:
        values = [series["value"][1] for series in data["result"]]
    if not values:
        return "no series"
    if all(v == "NaN" for v in values):
        return f"{len(values)} series, all NaN"
    return None


# --- the processes that produce the data ---------------------------------------------------


def simulator(
    pipeline: Pipeline,
    name: str,
    profile: Profile,
    transport: str,
    ingest_url: str | None = None,
    **settings: Any,
) -> ServiceProcess:
    defaults: dict[str, Any] = {
        "seed": 11,
        "device_count": 3,
        "publish_interval": 0.5,
        "max_jitter": 0.2,
        "shutdown_timeout": 1,
    }
    return pipeline.simulator(
        # Own log names: test_simulators.py runs "sim-*" processes in the same log directory.
        f"dash-{name}",
        profile,
        transport,
        pipeline.fleet(f"dash-{profile}"),
        ingest_url,
        **(defaults | settings),
    )


def connect_kubernetes() -> None:
    try:
        config.load_kube_config(KUBECONFIG)
        client.VersionApi().get_code()
    except Exception as exc:
        pytest.fail(
            f"the local Kubernetes control plane is not reachable ({exc!r}); start it with "
            "`make up` or `bash devstack/up.sh`",
            pytrace=False,
        )
    kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}")


@pytest.fixture(scope="module")
def monitored(pipeline: Pipeline) -> Iterator[Pipeline]:
    """Simulators and an operator in this session's namespace, scraped by Prometheus."""
    connect_kubernetes()
    namespace = pipeline.namespace
    for profile in ("f2", "truck", "generic"):
        pipeline.register(profile, pipeline.fleet(f"dash-{profile}"), 3)
    closed_port = free_port()  # nothing listens there: the breaker opens
    processes = {
        # MQTT through the session's bridge; malformed readings are dead-lettered by the
        # processor, duplicates reach the sink as duplicate rows.
        "sim-f2-mqtt": simulator(pipeline, "sim-f2-mqtt", "f2", "mqtt", malformed_rate=0.05),
        "sim-generic-mqtt": simulator(
            pipeline, "sim-generic-mqtt", "generic", "mqtt", malformed_rate=0.05
        ),
        # HTTP to the session's ingest: duplicates answered 409, malformed 400.
        # An edge gateway in test mode: health predictions and their live accuracy.
        "sim-truck-http": simulator(
            pipeline,
            "sim-truck-http",
            "truck",
            "http",
            pipeline.ingest_url,
            malformed_rate=0.05,
            edge=True,
            ground_truth=True,
        ),
        "sim-outage-http": simulator(
            pipeline,
            "sim-outage-http",
            "generic",
            "http",
            f"http://127.0.0.1:{closed_port}",
            device_count=1,
            drop_rate=0,
            jitter_rate=0,
            duplicate_rate=0,
            retry_max_attempts=2,
            retry_base=0.05,
            retry_max=0.2,
            breaker_fail_max=2,
            breaker_reset_timeout=3,
            request_timeout=1,
        ),
    }
    metrics_port, liveness_port = free_port(), free_port()
    processes["operator"] = ServiceProcess(
        "operator-dashboards",
        ["devicefleet-operator"],
        {
            "KUBECONFIG": KUBECONFIG,
            "OPERATOR_NAMESPACES": json.dumps([namespace]),
            "OPERATOR_STANDALONE": "true",
            "OPERATOR_STATUS_INTERVAL": "1",
            "OPERATOR_STATUS_TIMEOUT": "0.5",
            "OPERATOR_SIMULATOR_IMAGE": "devicefleet/simulator:test",
            "OPERATOR_NODE_SELECTOR": json.dumps({"type": "kwok"}),
            "OPERATOR_TOLERATIONS": json.dumps(
                [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
            ),
            "OPERATOR_METRICS_PORT": str(metrics_port),
            "OPERATOR_LIVENESS_PORT": str(liveness_port),
            "OPERATOR_LOG_LEVEL": "INFO",
        },
        pipeline.log_dir,
        f"http://127.0.0.1:{liveness_port}/healthz",
    )
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    fleet = pipeline.fleet("dash-fleet")
    sd_file = PROMETHEUS_SD_DIR / f"tests-{pipeline.run_id}-dashboards.json"
    try:
        # No kubelet plays these pods (the kwok runner keeps out): the operator's /status
        # reads fail, which is what its poll-error panel shows.
        core.create_namespace(
            {
                "metadata": {
                    "name": namespace,
                    "labels": {"iot.devicefleet.io/kwok-runner": "disabled"},
                }
            }
        )
        # Started side by side: each takes seconds to import and answer its health check
        # (more on a busy 2-core machine, hence the generous timeout).
        with ThreadPoolExecutor(len(processes)) as pool:
            for started in [pool.submit(p.start, 90) for p in processes.values()]:
                started.result()
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            fleet_body(fleet, profile="generic", devices=2, devicesPerPod=1),
        )
        targets = [
            scrape_target(
                "simulator",
                (p.health_url or "").split("/")[2],
                namespace,
                f"{name}-{pipeline.run_id}",
            )
            for name, p in processes.items()
            if name != "operator"
        ]
        targets.append(
            scrape_target(
                "operator",
                f"127.0.0.1:{metrics_port}",
                namespace,
                f"devicefleet-operator-{pipeline.run_id}",
            )
        )
        sd_file.write_text(json.dumps(targets))
        yield pipeline
    finally:
        sd_file.unlink(missing_ok=True)
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda p: p.stop(), [p for n, p in processes.items() if n != "operator"]))
        _delete_fleet(custom, namespace, fleet)
        processes["operator"].stop()
        try:
            core.delete_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _delete_fleet(custom: client.CustomObjectsApi, namespace: str, fleet: str) -> None:
    """Delete the fleet while the operator runs, so it can release its finalizer."""
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, fleet)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, fleet)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 60, interval=0.5, message=f"DeviceFleet {namespace}/{fleet} to be deleted")


def wait_for_targets(namespace: str) -> None:
    """All of the session's targets are scraped, one job per DeviceFleet service at least."""

    def up() -> bool:
        active = prometheus("/api/v1/targets", state="active")["activeTargets"]
        mine = [t for t in active if t["labels"].get("namespace") == namespace]
        return (
            {t["labels"]["job"] for t in mine} == JOBS
            and all(t["health"] == "up" for t in mine)
            and all(t["labels"].get("pod") for t in mine)
        )

    wait_for(up, 60, interval=1, message=f"every target of namespace {namespace} to be up")


# --- tests ---------------------------------------------------------------------------------


def test_incident_only_panels_are_the_documented_few() -> None:
    marked = {(q.dashboard, q.panel) for q in panel_queries() if q.incident_only}
    assert marked == EXPECTED_INCIDENT_ONLY


def test_session_targets_are_labelled_like_kubernetes(monitored: Pipeline) -> None:
    wait_for_targets(monitored.namespace)
    # The dashboards' namespace variable lists this session's namespace.
    for board in dashboards().values():
        variable = next(v for v in board["templating"]["list"] if v["name"] == "namespace")
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        series = prometheus("/api/v1/query", query=match.group(1))["result"]
        assert monitored.namespace in {s["metric"].get(match.group(2)) for s in series}


def test_every_dashboard_query_returns_data(monitored: Pipeline) -> None:
    namespace = monitored.namespace
    wait_for_targets(namespace)
    queries = panel_queries()
    assert len(queries) > 50
    invalid = [
        f"{q}: {reason}\n    {q.expr}"
        for q in queries
        if q.incident_only
        and (reason := has_data(substitute(q.expr, namespace)))
        and reason.startswith("query error")
    ]
    assert not invalid, "invalid queries in incident-only panels:\n" + "\n".join(invalid)

    pending = {q: "not evaluated yet" for q in queries if not q.incident_only}

    def all_have_data() -> bool:
        for q in list(pending):
            reason = has_data(substitute(q.expr, namespace))
            if reason is None:
                del pending[q]  # had data once: the panel is wired right
            else:
                pending[q] = reason
        return not pending

    try:
        wait_for(all_have_data, DATA_TIMEOUT, interval=2, message="data for every panel")
    except AssertionError:
        report = "\n".join(
            f"  {q}: {reason}\n      {substitute(q.expr, namespace)}"
            for q, reason in sorted(pending.items(), key=lambda item: str(item[0]))
        )
        pytest.fail(
            f"{len(pending)} of {len(queries)} dashboard queries returned no data for namespace "
            f"{namespace} within {DATA_TIMEOUT:.0f}s (a wrong metric or label name, a job the "
            f"monitors do not set, or a missing recording rule: run `bash devstack/up.sh "
            f"prometheus` to load the chart's rules):\n{report}",
            pytrace=False,
        )


def test_chart_rules_are_loaded_and_healthy(stack: dict[str, str]) -> None:
    files = sorted((CHART / "rules").glob("*.yaml"))
    assert files, f"no rule files in {CHART / 'rules'}"
    loaded = {p.name: p.read_bytes() for p in sorted(LOADED_RULES.glob("*.yaml"))}
    assert loaded == {p.name: p.read_bytes() for p in files}, (
        f"{LOADED_RULES} differs from {CHART / 'rules'}: run `bash devstack/up.sh prometheus` "
        "(copies the chart's rules and reloads Prometheus)"
    )
    expected = {
        group["name"]: [rule.get("record") or rule.get("alert") for rule in group["rules"]]
        for path in files
        for group in yaml.safe_load(path.read_text())["groups"]
    }

    def groups() -> dict[str, list[dict[str, Any]]]:
        return {
            g["name"]: g["rules"]
            for g in prometheus("/api/v1/rules")["groups"]
            if Path(g["file"]).parent == LOADED_RULES
        }

    loaded_groups = groups()
    assert {name: [r["name"] for r in rules] for name, rules in loaded_groups.items()} == (
        expected
    ), "Prometheus runs other rules than the chart's: run `bash devstack/up.sh prometheus`"

    # A group evaluated every minute reports "unknown" until its first evaluation.
    def unhealthy() -> list[str]:
        return [
            f"{group}/{rule['name']}: {rule['health']} {rule.get('lastError', '')}".strip()
            for group, rules in groups().items()
            for rule in rules
            if rule["health"] != "ok" or rule.get("lastError")
        ]

    problems: list[str] = []

    def healthy() -> bool:
        problems[:] = unhealthy()
        return not problems

    try:
        wait_for(healthy, 90, interval=2, message="every rule of the chart to evaluate")
    except AssertionError:
        pytest.fail("unhealthy rules:\n" + "\n".join(problems), pytrace=False)
