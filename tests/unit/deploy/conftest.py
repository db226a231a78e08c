"""Checkers for the Docker users' files (Dockerfiles, kind-config.yaml, skaffold.yaml), installed
by ``devstack/tools/install.sh`` into ``~/.cache/devicefleet/tools``. A missing one FAILS the test
with the command that installs it; these tests never skip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

INSTALL = REPO / "devstack" / "tools" / "install.sh"
INSTALL_HINT = "bash devstack/tools/install.sh"


def tool_path(tool: str) -> Path:
    """Where install.sh puts TOOL (the same path logic, asked from the script itself)."""
    result = subprocess.run(
        ["bash", str(INSTALL), "--print-path", tool],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def require_tool(tool: str) -> Path:
    path = tool_path(tool)
    if not path.is_file():
        pytest.fail(f"{tool} is not installed ({path} is missing): run `{INSTALL_HINT}`")
    return path


def install_pin(name: str) -> str:
    """A NAME=value pin of devstack/tools/install.sh."""
    for line in INSTALL.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError(f"{name} is not pinned in {INSTALL}")


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def dig(values: Any, dotted: str) -> Any:
    """values["a"]["b"] for "a.b"; KeyError naming the missing key."""
    node = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(dotted)
        node = node[key]
    return node


class DeployCheck:
    """devstack/tools/deploy-check: kind's and BuildKit's own code, see its main.go."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def json(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.returncode == 0, f"deploy-check {' '.join(args)}:\n{result.stderr}"
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def deploy_check() -> DeployCheck:
    return DeployCheck(require_tool("deploy-check"))


@pytest.fixture(scope="session")
def skaffold_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(require_tool("skaffold-schema").read_text())
    return schema


def merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of a parent's values over a subchart's defaults."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return override


def umbrella_values() -> dict[str, Any]:
    """charts/devicefleet's values as the umbrella sees them: each local subchart's values.yaml
    under its alias, with the umbrella's own values.yaml over them."""
    chart_dir = REPO / "charts" / "devicefleet"
    values: dict[str, Any] = load_yaml(chart_dir / "values.yaml")
    for dep in load_yaml(chart_dir / "Chart.yaml").get("dependencies", []):
        repository = dep.get("repository", "")
        if not repository.startswith("file://"):
            continue
        sub_values = chart_dir / repository.removeprefix("file://") / "values.yaml"
        if sub_values.is_file():  # a library chart has none
            key = dep.get("alias", dep["name"])
            values[key] = merge(load_yaml(sub_values) or {}, values.get(key, {}))
    return values


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    return umbrella_values()


@pytest.fixture(scope="session")
def kind_values() -> dict[str, Any]:
    values: dict[str, Any] = load_yaml(REPO / "charts" / "devicefleet" / "values-kind.yaml")
    return values
