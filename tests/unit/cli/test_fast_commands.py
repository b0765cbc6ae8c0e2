"""`--help`, `capacity` and `models list` stay fast: they import no heavy library
(counted in sys.modules of a fresh interpreter, not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "pandas", "sklearn", "xgboost", "duckdb", "pyarrow", "fastapi", "matplotlib")

_PROBE = """
import json, sys
from typer.testing import CliRunner
from shopsentry.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "output": result.output,
                  "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def probe(args: list[str], data_dir: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSENTRY_")}
    env["SHOPSENTRY_DATA_DIR"] = str(data_dir)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("args", [["--help"], ["capacity"], ["models", "list"]])
def test_command_imports_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    result = probe(args, tmp_path / "data")
    assert result["code"] == 0, result["output"]
    loaded = set(result["modules"])  # type: ignore[arg-type]
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_models_list_reads_an_empty_registry_without_creating_one(tmp_path: Path) -> None:
    result = probe(["models", "list"], tmp_path / "data")
    assert "no versions" in str(result["output"])
    assert not (tmp_path / "data" / "mlflow.db").exists()
