"""`shopsentry --help` and the detector's scorer import stay free of MLflow."""

from __future__ import annotations

import subprocess
import sys


def test_cli_and_scorer_imports_do_not_pull_in_mlflow():
    code = (
        "import sys, shopsentry.cli, shopsentry.models, shopsentry.models.scorer;"
        "names = ('mlflow', 'sklearn', 'shopsentry.models.registry');"
        "heavy = [m for m in names if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
