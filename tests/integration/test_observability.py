"""Metrics: every service's /metrics passes `promtool check metrics`, and the local Prometheus
scrapes them, so the series dashboards and alerts use exist with real values."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import httpx
import pytest

from devicefleet_common.devices import device_id
from devicefleet_common.topics import sensor_topic
from tests.integration.conftest import PROMETHEUS_URL, Pipeline
from tests.support import wait_for


@pytest.mark.parametrize("service", ["ingest", "bridge", "processor", "sink"])
def test_metrics_pass_promtool(pipeline: Pipeline, service: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by devstack/install.sh (Debian package prometheus)"
    health_url = pipeline.services[service].health_url or ""
    url = health_url.rsplit("/", 1)[0] + "/metrics"  # /health, /ready or /metrics itself
    exposition = httpx.get(url, timeout=5).text
    assert "# TYPE" in exposition
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        text=True,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == "", "promtool lint findings"


def prometheus_value(query: str) -> float | None:
    result = httpx.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": query}, timeout=5).json()[
        "data"
    ]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_pipeline(pipeline: Pipeline) -> None:
    fleet = pipeline.fleet("prom")
    pipeline.register("generic", fleet, 1)
    dev = device_id("generic", fleet, 0)
    response = httpx.post(
        f"{pipeline.ingest_url}/ingest",
        timeout=10,
        json={
            "device_id": dev,
            "boot_epoch": 1,
            "sequence": 0,
            "topic": sensor_topic(dev),
            "timestamp": datetime.now(UTC).isoformat(),
            "payload": {"temperature": 1.0},
        },
    )
    assert response.status_code == 200, response.text
    # Labelled like in Kubernetes (job from the ServiceMonitor, the session's namespace).
    ns = f'namespace="{pipeline.namespace}"'
    for query in (
        f'sum(up{{{ns},job=~"devicefleet-(ingest|bridge|processor|sink)"}})',
        f'sum(ingest_messages_total{{{ns},job="devicefleet-ingest",outcome="accepted"}})',
        f'sum(processor_messages_total{{{ns},job="devicefleet-processor",outcome="decoded"}})',
        f'sum(sink_rows_total{{{ns},job="devicefleet-sink",outcome="inserted"}})',
        f'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{ns},job="devicefleet-ingest"}}[1m])))',
    ):
        wait_for(
            lambda q=query: (prometheus_value(q) or 0) > 0,
            60,  # type: ignore[misc]
            interval=1,
            message=f"Prometheus to return data for {query}",
        )
    assert (
        prometheus_value(f'sum(up{{{ns},job=~"devicefleet-(ingest|bridge|processor|sink)"}})') == 4
    )
