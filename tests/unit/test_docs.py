from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_configuration_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/config_reference.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_value_schemas_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/chart_schemas.py", "--check"],
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
