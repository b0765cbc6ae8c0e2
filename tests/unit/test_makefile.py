"""`make demo` shows pip's progress while it installs instead of minutes of silence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_install_shows_progress() -> None:
    require(shutil.which("make") is not None, "make", "apt-get install -y make")
    plan = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), ".venv/.installed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert installs, plan
    for line in installs:
        assert " -q" not in line and "--progress-bar on" in line, line
    assert "a few minutes" in plan
