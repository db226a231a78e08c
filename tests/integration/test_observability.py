"""Every service's /metrics passes `promtool check metrics` (Prometheus naming conventions)."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from tests.integration.conftest import Pipeline


@pytest.mark.parametrize("service", ["ingest", "bridge", "processor", "sink"])
def test_metrics_pass_promtool(pipeline: Pipeline, service: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by devstack/install.sh (Debian package prometheus)"
    url = pipeline.services[service].health_url or ""
    url = url.replace("/health", "/metrics")
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
