"""The batch jobs end to end on a real warehouse: the report reads what the ETL built
and reruns byte for byte, a transform that fails is retried without duplicates, and
the weekly retrain runs once per week unless forced."""

from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shopsentry.warehouse.db import connect
from tests.integration.warehouse.test_dbt_warehouse import produce, snapshot
from tests.unit.warehouse.factories import make_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_report_reads_the_etl_output_and_reruns_identically(settings) -> None:
    from shopsentry.pipelines.daily_fraud_report import daily_fraud_report
    from shopsentry.pipelines.hourly_etl import hourly_etl

    events = make_events()
    produce(settings, events.by_topic)
    hourly_etl(settings)
    day = date(2026, 11, 20)
    first = daily_fraud_report(settings, day)
    with connect(settings.warehouse_path, read_only=True) as con:
        orders, alerts, confirmed = con.execute(
            "select count(*), sum(case when is_alerted then 1 else 0 end),"
            " sum(case when is_confirmed_fraud then 1 else 0 end)"
            " from analytics.fct_orders where order_date = ?",
            [day],
        ).fetchall()[0]
    assert (
        first.summary["orders"]
        == orders
        == sum(1 for p in events.purchases if p.occurred_at.date() == day)
    )
    assert first.summary["alerts"] == alerts and first.summary["confirmed_fraud"] == confirmed
    html = first.path.read_text()
    assert f'id="kpi-orders">{orders}<' in html
    assert html.count("<tr><td>alert-") == alerts
    assert daily_fraud_report(settings, day).path.read_bytes() == first.path.read_bytes()


def test_a_failed_transform_is_retried_without_duplicates(settings, monkeypatch, tmp_path) -> None:
    from shopsentry.config import Settings
    from shopsentry.pipelines.hourly_etl import hourly_etl
    from shopsentry.warehouse.db import DbtFailed

    etl_module = importlib.import_module("shopsentry.pipelines.hourly_etl")
    dbt_module = importlib.import_module("shopsentry.warehouse.dbt")
    events = make_events()
    produce(settings, events.by_topic)
    real = dbt_module.run_dbt

    def crash(*args, **kwargs):
        raise DbtFailed("dbt build: worker lost")

    monkeypatch.setattr(dbt_module, "run_dbt", crash)
    with pytest.raises(DbtFailed):
        hourly_etl(settings)
    monkeypatch.setattr(dbt_module, "run_dbt", real)
    retried = hourly_etl(settings)  # the retry: RAW is already loaded, dbt builds it all
    assert retried.records_read == 0

    clean = Settings(data_dir=tmp_path / "clean")
    produce(clean, events.by_topic)
    hourly_etl(clean)
    assert snapshot(settings) == snapshot(clean)
    assert etl_module.extract_load(settings).rows_inserted == 0


def test_weekly_retrain_runs_once_per_week(mlflow_settings, tmp_path: Path) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl
    from shopsentry.pipelines.weekly_model_retrain import weekly_model_retrain

    settings = mlflow_settings.model_copy(
        update={"model": mlflow_settings.model.model_copy(update={"validation_days": 3})}
    )
    history = tmp_path / "history"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("shopsentry")),
            "--data-dir", str(settings.data_dir),
            "simulate", "--days", "10", "--users", "150", "--fraud-share", "0.2", "--seed", "5",
            "--start", "2026-11-10", "--out", str(history),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hourly_etl(settings, history=history)
    as_of = datetime(2026, 12, 27, 2, tzinfo=UTC)
    first = weekly_model_retrain(settings, as_of)
    assert first.version and first.training_rows > 0 and not first.reused
    with connect(settings.warehouse_path, read_only=True) as con:
        features = {r[0] for r in con.execute("describe ml_features.training_set").fetchall()}
    from shopsentry.features import FEATURE_NAMES

    assert set(FEATURE_NAMES) <= features
    again = weekly_model_retrain(settings, as_of)
    assert again.reused and again.version == first.version
    forced = weekly_model_retrain(settings, as_of, force=True)
    assert forced.version != first.version
