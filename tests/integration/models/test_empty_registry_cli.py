"""On a fresh machine (`shopsentry train` never run) the `models` commands that move an
alias say so in one line on stderr and exit 1, and leave no MLflow database behind;
`models list` says there is nothing yet.

The commands run as a user runs them, `python -m shopsentry` in a new process, so the
console entry point's error handling is part of what is tested (CliRunner would catch an
uncaught exception and report exit code 1 all the same), and so is what the process
writes to disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# The commands that change the registry: each must refuse an empty one.
MOVES = (
    ["rollback"],
    ["promote", "1"],
    ["challenger", "1"],
    ["challenger", "--clear"],
)


@dataclass(frozen=True)
class EmptyRegistry:
    name: str
    data_dir: Path
    db: Path
    env: dict[str, str]


@pytest.fixture(params=["no data dir", "no database", "nothing registered"])
def empty_registry(request: pytest.FixtureRequest, tmp_path: Path) -> EmptyRegistry:
    """No data dir at all; a data dir without mlflow.db; or a migrated MLflow database
    (the session's) in which nothing is registered under this model name."""
    name = f"test-fraud-{uuid.uuid4().hex[:10]}"
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSENTRY_")}
    env |= {"SHOPSENTRY_DATA_DIR": str(data_dir), "SHOPSENTRY_MODEL__NAME": name}
    env["COLUMNS"] = "200"
    db = (data_dir / "mlflow.db").resolve()
    if request.param == "no database":
        data_dir.mkdir()
    elif request.param == "nothing registered":
        uri: str = request.getfixturevalue("mlflow_tracking_uri")
        env["SHOPSENTRY_MODEL__TRACKING_URI"] = uri
        db = Path(uri.removeprefix("sqlite:///"))
        assert db.is_file()
    return EmptyRegistry(name, data_dir, db, env)


def run(registry: EmptyRegistry, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopsentry", "models", *args],
        env=registry.env,
        cwd=registry.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("args", MOVES, ids=" ".join)
def test_a_move_on_an_empty_registry_is_one_line_and_exit_1(
    empty_registry: EmptyRegistry, args: list[str]
) -> None:
    before = files_under(empty_registry.data_dir.parent)
    result = run(empty_registry, args)

    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: no model registered yet under {empty_registry.name!r} in"
        f" {empty_registry.db} (run `shopsentry train` first)"
    ]
    assert result.returncode == 1
    assert result.stdout == ""
    # nothing written: no mlflow.db, no data dir, no pointer or artifact directories
    assert not (empty_registry.data_dir / "mlflow.db").exists()
    assert files_under(empty_registry.data_dir.parent) == before


def test_list_on_an_empty_registry_says_there_is_nothing_yet(
    empty_registry: EmptyRegistry,
) -> None:
    before = files_under(empty_registry.data_dir.parent)
    result = run(empty_registry, ["list"])

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"no versions of {empty_registry.name} yet; run `shopsentry train`\n"
    assert result.stderr == ""
    assert files_under(empty_registry.data_dir.parent) == before
