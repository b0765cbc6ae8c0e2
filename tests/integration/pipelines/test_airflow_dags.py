"""Each DAG runs with ``dag.test()`` on the real Airflow install against a DuckDB
warehouse in a temp data dir: hourly_etl drains the embedded log and builds the
warehouse, daily_fraud_report refreshes the model monitoring and writes the previous
day's report, weekly_model_retrain
builds the training set from a small backfilled history, trains and registers a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.warehouse.factories import make_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _publish_to_local_log(data_dir: Path) -> int:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.config import Settings

    settings = Settings(data_dir=data_dir)
    events = make_events()
    log = open_log(BusConfig.from_settings(settings))
    try:
        producer = log.producer()
        for topic, records in events.by_topic.items():
            for key, value in records:
                producer.send(topic, value, key)
        producer.flush()
        producer.close()
    finally:
        log.close()
    return len(events.purchases)


def test_hourly_etl_then_daily_fraud_report(run_dag, tmp_path: Path) -> None:
    from shopsentry.config import Settings
    from shopsentry.warehouse.db import connect

    data_dir = tmp_path / "data"
    purchases = _publish_to_local_log(data_dir)
    env = {"SHOPSENTRY_DATA_DIR": str(data_dir)}

    hourly = run_dag("hourly_etl", "2026-11-20T11:00:00+00:00", env=env)
    assert hourly.state == "success", hourly.output[-3000:]
    assert hourly.tasks == {
        "extract_load": "success",
        "write_lake": "success",
        "transform": "success",
        "quality_checks": "success",
    }
    settings = Settings(data_dir=data_dir)
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("select count(*) from analytics.fct_orders").fetchall() == [(purchases,)]
    # The 1-hour SLA was stored as a deadline alert on the serialized DAG.
    assert len(hourly.deadline_alerts) == 1
    assert "3600" in str(hourly.deadline_alerts[0]["interval"])
    assert "deadline_missed" in str(hourly.deadline_alerts[0]["callback"])
    quality = hourly.xcoms["quality_checks"]
    assert "2026-11-20T10:00:00+00:00" in str(quality)

    from shopsentry.monitoring.metrics import dag_run_counts, dag_runs_path

    counts = dag_run_counts(dag_runs_path(settings.state_dir))
    assert counts[("hourly_etl", "success")] == 1  # on_success_callback

    report = run_dag("daily_fraud_report", "2026-11-21T06:00:00+00:00", env=env)
    assert report.state == "success", report.output[-3000:]
    assert report.tasks == {"refresh_monitoring": "success", "write_report": "success"}
    # The daily refresh built the day's drift tables, as of the end of the report day.
    assert "2026-11-21T00:00:00+00:00" in str(report.xcoms["refresh_monitoring"])
    with connect(settings.warehouse_path, read_only=True) as con:
        for table in ("feature_drift_daily", "score_drift_daily", "model_quality_daily"):
            con.execute(f"select count(*) from monitoring.{table}").fetchall()
    path = settings.reports_dir / "fraud-report-2026-11-20.html"
    assert path.is_file()
    assert "Fraud report — 2026-11-20" in path.read_text()


def test_weekly_model_retrain_on_a_small_history(
    run_dag, tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    history = tmp_path / "history"
    data_dir = tmp_path / "data"
    simulate = subprocess.run(
        [
            str(Path(sys.executable).with_name("shopsentry")),
            "--data-dir", str(data_dir),
            "simulate", "--days", "10", "--users", "150", "--fraud-share", "0.2", "--seed", "3",
            "--start", "2026-11-10", "--out", str(history),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert simulate.returncode == 0, simulate.stderr
    env = {
        "SHOPSENTRY_DATA_DIR": str(data_dir),
        "SHOPSENTRY_MODEL__TRACKING_URI": mlflow_tracking_uri,
        "SHOPSENTRY_MODEL__NAME": f"dagtest-{tmp_path.name}",
        "SHOPSENTRY_MODEL__EXPERIMENT": f"dagtest-{tmp_path.name}",
        "SHOPSENTRY_MODEL__VALIDATION_DAYS": "3",
    }
    backfill = run_dag(
        "hourly_etl", "2026-11-20T01:00:00+00:00", conf={"history": str(history)}, env=env
    )
    assert backfill.state == "success", backfill.output[-3000:]

    weekly = run_dag("weekly_model_retrain", "2026-12-27T02:00:00+00:00", env=env)
    assert weekly.state == "success", weekly.output[-4000:]
    assert weekly.tasks == {"build_training_set": "success", "train_and_gate": "success"}
    outcome = weekly.xcoms["train_and_gate"]
    assert outcome["version"], outcome
    assert weekly.xcoms["build_training_set"] > 0
