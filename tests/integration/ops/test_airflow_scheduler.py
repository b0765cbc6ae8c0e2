"""The DAGs under a real Airflow 3 scheduler, as production runs them.

``dag.test()`` (tests/integration/pipelines) never involves the scheduler: here a
scheduler with the LocalExecutor, a DAG processor and an API server run over ``dags/``
on SQLite, and the test acts only as an operator would, through the v2 REST API.

* ``hourly_etl`` runs by its own schedule: unpausing it makes the scheduler create the
  latest interval's run (``catchup=False``), with no trigger.
* That run's first try finds the warehouse locked by another writer (the test holds
  DuckDB's write lock): a transient failure. The scheduler retries the task, the retry
  loads every event exactly once, and the run succeeds.
* A backfill from a directory that does not exist is a terminal failure: the run fails
  and the DAG's failure callback counts it in ``shopsentry_dag_runs_total``.
* ``weekly_model_retrain`` and ``daily_fraud_report`` run from a trigger through the API
  (for their next due interval, so unpausing them adds no scheduled run of it).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopsentry.models.scorer import ModelFiles
from tests.integration.ops.airflow_server import AirflowServer, running_airflow, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = {"hourly_etl", "daily_fraud_report", "weekly_model_retrain"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten simulated days of 150 users in the embedded log, waiting for hourly_etl."""
    data = tmp_path_factory.mktemp("airflow-data") / "data"
    simulate = subprocess.run(
        [
            str(Path(sys.executable).with_name("shopsentry")),
            "--data-dir", str(data),
            "simulate", "--days", "10", "--users", "150", "--fraud-share", "0.2", "--seed", "3",
            "--start", "2026-11-10",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert simulate.returncode == 0, simulate.stderr
    return data


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, mlflow_tracking_uri: str
) -> Iterator[AirflowServer]:
    import importlib.util

    from tests.conftest import require

    require(
        importlib.util.find_spec("airflow") is not None,
        "Apache Airflow",
        "pip install -e '.[airflow]'",
    )
    name = f"airflow-{data_dir.parent.name}"
    env = {
        "SHOPSENTRY_DATA_DIR": str(data_dir),
        "SHOPSENTRY_MODEL__TRACKING_URI": mlflow_tracking_uri,
        "SHOPSENTRY_MODEL__NAME": name,
        "SHOPSENTRY_MODEL__EXPERIMENT": name,
        "SHOPSENTRY_MODEL__VALIDATION_DAYS": "3",
    }
    yield from running_airflow(tmp_path_factory.mktemp("airflow-home"), env)


def _settings(data_dir: Path) -> Any:
    from shopsentry.config import Settings

    return Settings(data_dir=data_dir)


def _purchases_in_log(data_dir: Path) -> int:
    from shopsentry.bus import BusConfig, open_log

    settings = _settings(data_dir)
    log = open_log(BusConfig.from_settings(settings))
    try:
        info = log.describe_topic(settings.topics.purchase_events.name)
    finally:
        log.close()
    return sum(p.end_offset - p.start_offset for p in info.partitions)


def _failed_tries(airflow: AirflowServer, dag_id: str, run_id: str, task_id: str) -> int:
    return sum(1 for t in airflow.tries(dag_id, run_id, task_id) if t["state"] == "failed")


def test_the_dags_parse_and_start_paused(airflow: AirflowServer) -> None:
    assert wait_for(lambda: airflow.dag_ids() >= DAGS, "the DAG processor to store every DAG")
    assert airflow.api("GET", "/importErrors")["total_entries"] == 0
    dags = {d["dag_id"]: d for d in airflow.api("GET", "/dags")["dags"]}
    assert all(dags[d]["is_paused"] for d in DAGS)
    assert dags["hourly_etl"]["timetable_summary"] in ("@hourly", "0 * * * *")


def test_hourly_etl_runs_by_its_schedule_and_a_transient_failure_is_retried(
    airflow: AirflowServer, data_dir: Path
) -> None:
    import duckdb

    from shopsentry.monitoring.metrics import dag_run_counts, dag_runs_path
    from shopsentry.warehouse.db import connect

    settings = _settings(data_dir)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    lock = duckdb.connect(str(settings.warehouse_path))  # another writer holds the warehouse
    try:
        airflow.unpause("hourly_etl")
        run = wait_for(lambda: next(iter(airflow.runs("hourly_etl")), None), "a scheduled run")
        run_id = run["dag_run_id"]
        assert run["run_type"] == "scheduled" and run["triggered_by"] == "timetable"
        wait_for(
            lambda: _failed_tries(airflow, "hourly_etl", run_id, "extract_load") >= 1,
            "extract_load's first try to fail on the locked warehouse",
        )
    finally:
        lock.close()
    final = airflow.finished("hourly_etl", run_id)
    assert final["state"] == "success", airflow.log("scheduler")[-3000:]
    tries = airflow.tries("hourly_etl", run_id, "extract_load")
    assert [t["state"] for t in tries][-1] == "success"
    assert len(tries) >= 2 and tries[0]["state"] == "failed"
    assert "locked by another process" in airflow.task_log("hourly_etl", run_id, "extract_load", 1)
    assert {t["task_id"]: t["state"] for t in airflow.tasks("hourly_etl", run_id).values()} == {
        "extract_load": "success",
        "write_lake": "success",
        "transform": "success",
        "quality_checks": "success",
    }
    purchases = _purchases_in_log(data_dir)
    with connect(settings.warehouse_path, read_only=True) as con:
        orders, distinct = con.execute(
            "select count(*), count(distinct event_id) from analytics.fct_orders"
        ).fetchone()
    assert orders == distinct == purchases  # every event once, despite the failed try
    assert wait_for(
        lambda: (
            dag_run_counts(dag_runs_path(settings.state_dir)).get(("hourly_etl", "success")) == 1
        ),
        "the success callback to count the run",
    )


def test_a_terminal_failure_fails_the_run_and_fires_the_failure_callback(
    airflow: AirflowServer, data_dir: Path
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from shopsentry.monitoring.metrics import DagRunsCollector, dag_run_counts, dag_runs_path

    settings = _settings(data_dir)
    run_id = airflow.trigger("hourly_etl", {"history": str(data_dir / "no-such-history")})
    final = airflow.finished("hourly_etl", run_id)
    assert final["state"] == "failed"
    assert airflow.tasks("hourly_etl", run_id)["extract_load"]["state"] == "failed"
    wait_for(
        lambda: (
            dag_run_counts(dag_runs_path(settings.state_dir)).get(("hourly_etl", "failed")) == 1
        ),
        "the failure callback to count the failed run",
    )
    registry = CollectorRegistry()
    registry.register(DagRunsCollector(dag_runs_path(settings.state_dir)))
    exposition = generate_latest(registry).decode()
    assert 'shopsentry_dag_runs_total{dag="hourly_etl",state="failed"} 1.0' in exposition


def test_weekly_retrain_and_daily_report_run_from_an_api_trigger(
    airflow: AirflowServer, data_dir: Path
) -> None:
    settings = _settings(data_dir)
    for dag_id in ("weekly_model_retrain", "daily_fraud_report"):
        # Triggered for the interval the schedule would run next, so that unpausing does
        # not queue a second, scheduled run of the same interval ahead of this one.
        due = airflow.api("GET", f"/dags/{dag_id}")["next_dagrun_logical_date"]
        run_id = airflow.trigger(dag_id, logical_date=due)
        airflow.unpause(dag_id)
        assert airflow.run(dag_id, run_id)["run_type"] == "manual"
        final = airflow.finished(dag_id, run_id)
        assert final["state"] == "success", f"{dag_id}: {airflow.log('scheduler')[-3000:]}"
    from shopsentry.models import champion_version

    assert champion_version(ModelFiles.from_settings(settings)) is not None
    assert list(settings.reports_dir.glob("fraud-report-*.html"))
