"""Analytics endpoints over a real warehouse: a small simulated history loaded into RAW
and built by dbt (dbt-duckdb), then read by the API through read-only DuckDB."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import make_keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def built_warehouse(tmp_path: Path) -> Settings:
    from shopsentry.pipelines.hourly_etl import extract_load, transform

    settings = Settings(data_dir=tmp_path / "data", log_fsync="never")
    history = tmp_path / "history"
    simulate = [
        sys.executable,
        "-m",
        "shopsentry",
        "--data-dir",
        str(settings.data_dir),
        "simulate",
    ]
    simulate += ["--days", "3", "--users", "300", "--out", str(history), "--seed", "5"]
    result = subprocess.run(simulate, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    extract_load(settings, history=history)
    transform(settings)
    return settings


def test_daily_sales_and_fraud_kpis_come_from_the_warehouse(
    built_warehouse: Settings, tmp_path: Path
) -> None:
    from shopsentry.api import create_app
    from shopsentry.warehouse.queries import daily_sales

    settings = built_warehouse
    expected = daily_sales(settings.warehouse_path)
    assert expected, "the warehouse should have daily sales"
    keys = make_keys(settings)
    with TestClient(create_app(settings, start_consumer=False)) as client:
        h = keys.header(keys.analyst)
        sales = client.get("/v1/analytics/daily-sales", headers=h)
        assert sales.status_code == 200
        body = sales.json()
        assert body["source"] == "warehouse"
        assert [(r["day"], r["orders"]) for r in body["rows"]] == [
            (row["day"].isoformat(), row["orders"]) for row in expected
        ]
        assert sum(r["orders"] for r in body["rows"]) > 0

        first_day: date = expected[-1]["day"]
        bounded = client.get(
            "/v1/analytics/daily-sales", params={"start": first_day.isoformat()}, headers=h
        )
        assert [r["day"] for r in bounded.json()["rows"]] == [first_day.isoformat()]

        kpis = client.get("/v1/analytics/fraud-kpis", headers=h)
        assert kpis.status_code == 200
        rows: list[dict[str, Any]] = kpis.json()["rows"]
        assert rows and {"day", "orders", "alerts", "false_positive_rate"} <= set(rows[0])

        summary = client.get("/v1/dashboard/summary", headers=h).json()
        assert summary["daily_sales"]["source"] == "warehouse"
        # Every query the warehouse ran is timed: 2 daily-sales + 1 fraud-kpis + the summary's.
        metrics = client.get("/metrics").text
        counts = dict(
            re.findall(
                r'^shopsentry_query_duration_seconds_count\{query="(\w+)"\} (\S+)$', metrics, re.M
            )
        )
        assert counts == {"daily_sales": "3.0", "fraud_kpis": "1.0"}
        for bad in ("' OR 1=1 --", "2026-13-01"):
            assert (
                client.get("/v1/analytics/fraud-kpis", params={"end": bad}, headers=h).status_code
                == 422
            )
