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
