"""Integration fixtures: each real service has its own fixture module in
``tests/integration/fixtures/`` (kafka, redis, airflow, chromium, ...), started once per
session on 127.0.0.1 and stopped at the end."""

from __future__ import annotations

import importlib.util

_FIXTURE_MODULES = (
    "tests.integration.fixtures.kafka",
    "tests.integration.fixtures.redis",
    "tests.integration.fixtures.airflow",
    "tests.integration.fixtures.chromium",
    "tests.integration.fixtures.mlflow",
)

pytest_plugins = [name for name in _FIXTURE_MODULES if importlib.util.find_spec(name) is not None]
