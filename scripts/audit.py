"""pip-audit over the locked environment: every package uv.lock pins for the workspace (all
members, all dependency groups), checked against PyPI's vulnerability data.

Fails on any known vulnerability. A package pip-audit could not look up is never counted as
clean: if PyPI's per-release JSON API (pip-audit's vulnerability source) answers for none of
them, the audit says loudly that nothing was audited and fails only with ``--strict`` (so
``make lint`` still works where that API is not reachable, e.g. behind a registry proxy that
serves only the package index); if it answers for some but not all, that fails.

Usage: ``uv run python scripts/audit.py [--strict]`` (``make lint`` runs it, ``make audit``
runs it with ``--strict``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def locked_requirements() -> str:
    uv = shutil.which("uv") or "uv"
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            uv,
            "export",
            "--frozen",
            "--no-hashes",
            "--all-packages",
            "--all-groups",
            "--no-emit-workspace",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def run_pip_audit(requirements: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        req, report = Path(tmp) / "requirements.txt", Path(tmp) / "audit.json"
        req.write_text(requirements)
        # --no-deps: the export pins everything already; --disable-pip: nothing is installed.
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "pip_audit", "-r", str(req), "--no-deps", "--disable-pip",
             "--progress-spinner", "off", "-f", "json", "-o", str(report)],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if not report.exists():
            sys.stderr.write(result.stderr)
            raise SystemExit(f"audit: pip-audit failed (exit {result.returncode})")
        dependencies: list[dict[str, Any]] = json.loads(report.read_text())["dependencies"]
        return dependencies


def verdict(dependencies: list[dict[str, Any]], strict: bool) -> tuple[int, list[str]]:
    """(exit code, report lines) for pip-audit's JSON ``dependencies``."""
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    lines = [
        f"audit: {d['name']} {d['version']}: {v['id']} (fixed in "
        f"{', '.join(v.get('fix_versions') or []) or 'no fix yet'})"
        for d in vulnerable
        for v in d["vulns"]
    ]
    if vulnerable:
        return 1, [*lines, f"audit: FAILED, {len(vulnerable)} vulnerable package(s) in uv.lock"]
    if not dependencies or len(skipped) == len(dependencies):
        first = skipped[0]["skip_reason"] if skipped else "no packages"
        return int(strict), [
            f"audit: WARNING: NOT AUDITED: PyPI's vulnerability data answered for none of the "
            f"{len(dependencies)} locked packages ({first}); run `make audit` where "
            "pypi.org/pypi/<name>/<version>/json is reachable"
        ]
    if skipped:
        lines = [f"audit: {d['skip_reason']}" for d in skipped]
        return 1, [*lines, f"audit: FAILED, {len(skipped)} of {len(dependencies)} not audited"]
    return 0, [f"audit: {len(dependencies)} locked packages, no known vulnerabilities"]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--strict", action="store_true", help="fail when the packages cannot be looked up"
    )
    args = parser.parse_args()
    code, lines = verdict(run_pip_audit(locked_requirements()), args.strict)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
