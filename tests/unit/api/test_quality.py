"""/v1/models/quality and /v1/models/drift: analysts only, rows from the warehouse's
monitoring tables, 503 until they exist, 422 naming a bad parameter."""

from __future__ import annotations

import sys
import types
from datetime import date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import Keys

DAY = date(2026, 1, 28)
QUALITY = {
    "day": DAY, "model_role": "champion", "model_version": "3", "purchases": 500, "alerts": 9,
    "alert_rate": 0.018, "labelled_frauds": 4, "true_positives": 3,
    "precision_at_threshold": 1 / 3, "recall_at_threshold": 0.75, "pr_auc": 0.61,
    "label_maturity": 0.12, "as_of": datetime(2026, 1, 29),
}  # fmt: skip
DRIFT = {
    "day": DAY, "model_version": "3", "feature": "amount", "purchases": 500, "psi": 1.4,
    "missing_share": 0.0, "reference_missing_share": 0.0, "importance_rank": 1,
}  # fmt: skip


@pytest.fixture
def monitoring_queries(api_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    api_settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    api_settings.warehouse_path.write_bytes(b"")
    calls: list[Any] = []
    module = types.ModuleType("shopsentry.warehouse.queries")

    def answer(name: str, rows: list[dict[str, Any]]) -> Any:
        def query(settings: Settings, **kwargs: Any) -> list[dict[str, Any]]:
            calls.append((name, kwargs))
            return rows

        return query

    module.model_quality = answer("model_quality", [QUALITY])  # type: ignore[attr-defined]
    module.model_comparison = answer("model_comparison", [])  # type: ignore[attr-defined]
    module.score_drift = answer("score_drift", [])  # type: ignore[attr-defined]
    module.feature_drift = answer("feature_drift", [DRIFT])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shopsentry.warehouse.queries", module)
    return calls


def test_model_ops_routes_are_503_until_the_warehouse_is_built(
    client: TestClient, keys: Keys
) -> None:
    for path in ("/v1/models/quality", "/v1/models/drift"):
        response = client.get(path, headers=keys.header(keys.analyst))
        assert response.status_code == 503
        assert "shopsentry batch run" in response.json()["detail"]
        assert client.get(path).status_code == 401
        assert client.get(path, headers=keys.header(keys.web)).status_code == 403


def test_quality_and_drift_answer_from_the_monitoring_tables(
    client: TestClient, keys: Keys, monitoring_queries: list[Any]
) -> None:
    h = keys.header(keys.analyst)
    quality = client.get("/v1/models/quality", params={"start": "2026-01-22"}, headers=h)
    assert quality.status_code == 200
    body = quality.json()
    assert body["as_of"] == "2026-01-29T00:00:00"
    assert body["rows"][0]["label_maturity"] == 0.12 and body["comparison"] == []
    assert ("model_quality", {"start": date(2026, 1, 22), "end": None}) in monitoring_queries
    drift = client.get("/v1/models/drift", params={"model_version": "3"}, headers=h).json()
    assert drift["day"] == "2026-01-28" and drift["features"][0]["feature"] == "amount"
    assert (drift["feature_psi_alert"], drift["score_psi_alert"], drift["top_features"]) == (
        0.2, 0.1, 10,
    )  # fmt: skip
    bad = client.get("/v1/models/drift", params={"model_version": "3; drop"}, headers=h)
    assert bad.status_code == 422 and "model_version" in bad.text
