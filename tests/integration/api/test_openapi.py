"""The OpenAPI document is true: schemathesis generates requests from it for every
operation (valid ones, and invalid ones derived from it), sends each with no key and
with a key of each role to the app in process, and every response must be documented
(status code, content type, body schema, headers), never a 500; an invalid request is
never accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig

from shopsentry.config import Settings
from tests.unit.api.factories import Keys, make_keys, publish, scored

OPERATIONS = (
    "POST /v1/events",
    "GET /v1/alerts",
    "GET /v1/alerts/{alert_id}",
    "POST /v1/alerts/{alert_id}/review",
    "GET /v1/reviews/stats",
    "GET /v1/analytics/daily-sales",
    "GET /v1/analytics/fraud-kpis",
    "GET /v1/models/quality",
    "GET /v1/models/drift",
    "GET /v1/dashboard/summary",
    "GET /v1/rules",
    "POST /v1/rules",
    "POST /v1/rules/check",
    "POST /v1/rules/backtest",
    "POST /v1/rules/{name}/activate",
    "POST /v1/rules/{name}/shadow",
    "POST /v1/rules/{name}/disable",
    "GET /v1/rules/{name}/history",
    "GET /v1/lists",
    "POST /v1/lists",
    "DELETE /v1/lists/{list}/{entity}/{value}",
    "POST /v1/lists/import",
    "GET /dashboard",
    "GET /dashboard/rules",
    "GET /healthz",
    "GET /metrics",
)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Keys]]:
    """The app behind uvicorn on a loopback port (in this process), for the whole module."""
    from shopsentry.api import create_app
    from shopsentry.bus import BusConfig, open_log
    from tests.integration.fixtures.chromium import LiveServer

    data = Path(tmp_path_factory.mktemp("openapi")) / "data"
    # A rate limit no generated run reaches: 429s have their own test.
    api = Settings(data_dir=data, log_fsync="never", api={"rate_limit_per_minute": 10_000_000})
    keys = make_keys(api)
    log = open_log(BusConfig.from_settings(api))
    publish(log, api, [scored(i, probability=0.9) for i in range(3)])
    try:
        with LiveServer(create_app(api, log=log)) as server:
            yield server, keys
    finally:
        log.close()


@pytest.fixture(scope="module")
def api_schema(served: tuple[Any, Keys]) -> Any:
    server, _ = served
    # 503 is a documented answer (the warehouse not built yet, the log not acknowledging);
    # any other 5xx is a failure.
    config = SchemathesisConfig.from_dict(
        {"checks": {"not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "503"]}}}
    )
    return schemathesis.openapi.from_dict(server.app.openapi(), config=config)


def test_every_operation_is_covered(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


# Nothing to break:
WITHOUT_PARAMETERS = ("GET /dashboard", "GET /dashboard/rules", "GET /healthz", "GET /metrics")


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, GenerationMode.POSITIVE) for label in OPERATIONS]
    + [(label, GenerationMode.NEGATIVE) for label in OPERATIONS if label not in WITHOUT_PARAMETERS],
)
def test_every_operation_answers_as_documented_to_every_role(
    api_schema: Any, served: tuple[Any, Keys], label: str, mode: GenerationMode
) -> None:
    server, keys = served
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    tokens = (None, keys.web, keys.analyst, keys.admin)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=15,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers(case: Any) -> None:
        for token in tokens:
            headers = {"X-API-Key": token} if token else {}
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

    answers()
