"""Shared test helpers.

`require(...)` is how an integration test asks for a service: with CI=true a missing
service fails the test (it must never be silently skipped in CI); locally it skips with
a message saying how to enable it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Real services for the integration tests, one fixture module each, started once per
# session on 127.0.0.1 (pytest only takes ``pytest_plugins`` from the top-level conftest).
_FIXTURE_MODULES = (
    "tests.integration.fixtures.kafka",
    "tests.integration.fixtures.redis",
    "tests.integration.fixtures.airflow",
    "tests.integration.fixtures.chromium",
    "tests.integration.fixtures.mlflow",
)
pytest_plugins = [name for name in _FIXTURE_MODULES if importlib.util.find_spec(name) is not None]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parents[1]


def require(available: bool, what: str, how: str) -> None:
    """Fail in CI, skip elsewhere, when ``available`` is false."""
    if available:
        return
    message = f"{what} is not available; {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires it)", pytrace=False)
    pytest.skip(f"{message} (required in CI)")


@pytest.fixture
def settings(tmp_path: Path):
    """Settings pointing every part at a fresh temporary data dir."""
    from shopsentry.config import Settings

    return Settings(data_dir=tmp_path / "data")
