from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.parametrize(
    "generator",
    [
        "scripts/config_reference.py",  # docs/configuration.md from the settings classes
        "scripts/chart_schemas.py",  # charts/*/values.schema.json
        "scripts/dashboards.py",  # charts/devicefleet-monitoring/dashboards/*.json
    ],
)
def test_generated_files_are_current(generator: str) -> None:
    result = subprocess.run(
        [sys.executable, generator, "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crd_is_the_repository_crd() -> None:
    """Helm installs the CRD from the operator chart's crds/; crds/ is what the operator tests
    and `kubectl apply -f crds/` use. One definition."""
    for path in (REPO / "crds").glob("*.yaml"):
        copy = REPO / "charts/devicefleet-operator/crds" / path.name
        assert copy.read_text() == path.read_text(), f"{copy} differs from {path}"
