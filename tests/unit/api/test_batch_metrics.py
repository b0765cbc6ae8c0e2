"""``shopsentry_dag_runs_total`` on the API's /metrics: runs recorded by ``shopsentry
batch run`` (and the DAG callbacks, through the same run table) in the data dir the
service serves."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shopsentry.cli import app
from shopsentry.config import Settings
from shopsentry.monitoring.metrics import dag_runs_path, record_dag_run
from shopsentry.warehouse.db import WarehouseError

runner = CliRunner()


@dataclass
class _Report:
    day: date

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat()}


def dag_runs(text: str) -> dict[tuple[str, str], float]:
    pattern = r'^shopsentry_dag_runs_total\{dag="([^"]+)",state="([^"]+)"\} (\S+)$'
    return {(d, s): float(n) for d, s, n in re.findall(pattern, text, re.M)}


def test_batch_runs_are_counted_by_outcome_and_exposed(
    client: TestClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package re-exports the function under the module's name: fetch the module itself.
    report = importlib.import_module("shopsentry.pipelines.daily_fraud_report")
    assert dag_runs(client.get("/metrics").text) == {}
    outcomes = iter([None, None, WarehouseError("the warehouse is gone", hint="rebuild it")])

    def fake_report(settings: Settings, day: date | None = None, **_: Any) -> _Report:
        assert settings.data_dir == api_settings.data_dir
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return _Report(day or date(2026, 11, 24))

    monkeypatch.setattr(report, "daily_fraud_report", fake_report)
    data = ["--data-dir", str(api_settings.data_dir)]
    for expected_exit in (0, 0, 1):
        result = runner.invoke(
            app, [*data, "batch", "run", "daily_fraud_report", "--date", "2026-11-24", "--json"]
        )
        assert result.exit_code == expected_exit, result.output
    assert isinstance(result.exception, WarehouseError)  # the failure is not swallowed

    runs = dag_runs_path(api_settings.state_dir)
    record_dag_run(runs, "hourly_etl", "success")  # as the Airflow callback does
    assert dag_runs(client.get("/metrics").text) == {
        ("daily_fraud_report", "success"): 2.0,
        ("daily_fraud_report", "failed"): 1.0,
        ("hourly_etl", "success"): 1.0,
    }
