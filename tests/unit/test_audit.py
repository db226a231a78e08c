"""scripts/audit.py's verdict on pip-audit's report: a vulnerability fails, a package that
could not be looked up never counts as clean."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit"] = module
    spec.loader.exec_module(module)
    return module


CLEAN = {"name": "fastapi", "version": "0.165.0", "vulns": []}
VULNERABLE = {
    "name": "urllib3",
    "version": "2.0.0",
    "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["2.0.7"]}],
}
SKIPPED = {"name": "aiohttp", "skip_reason": "Dependency not found on PyPI: aiohttp (3.14.5)"}


def test_clean(audit: ModuleType) -> None:
    code, lines = audit.verdict([CLEAN], strict=True)
    assert code == 0
    assert "no known vulnerabilities" in lines[-1]


@pytest.mark.parametrize("strict", [False, True])
def test_a_vulnerability_fails(audit: ModuleType, strict: bool) -> None:
    code, lines = audit.verdict([CLEAN, VULNERABLE, SKIPPED], strict=strict)
    assert code == 1
    assert "urllib3 2.0.0: GHSA-xxxx (fixed in 2.0.7)" in lines[0]


def test_some_packages_not_audited_fails(audit: ModuleType) -> None:
    code, lines = audit.verdict([CLEAN, SKIPPED], strict=False)
    assert code == 1
    assert "1 of 2 not audited" in lines[-1]


@pytest.mark.parametrize(("strict", "code"), [(False, 0), (True, 1)])
def test_nothing_audited_is_said_and_fails_only_when_strict(
    audit: ModuleType, strict: bool, code: int
) -> None:
    got, lines = audit.verdict([SKIPPED, SKIPPED], strict=strict)
    assert got == code
    assert "NOT AUDITED" in lines[0]
