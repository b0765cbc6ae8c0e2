"""The DAG files load in a DagBag without import errors, with the design's schedules,
default_args (retries 3, 5-minute delay, 2-hour timeout, no depends_on_past), tags,
one active run at a time (DuckDB has one writer) and the 1-hour SLA as a deadline alert."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO

# Airflow reads its home at import: keep it out of the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shopsentry-airflow-unit-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

pytest.importorskip("airflow.sdk", reason="the airflow extra is not installed")

EXPECTED = {
    "hourly_etl": ("@hourly", ["extract_load", "write_lake", "transform", "quality_checks"]),
    "daily_fraud_report": ("0 6 * * *", ["refresh_monitoring", "write_report"]),
    "weekly_model_retrain": ("0 2 * * 0", ["build_training_set", "train_and_gate"]),
    "retention": ("30 3 * * *", ["move_tiers"]),
    "hourly_backup": ("@hourly", ["create_backup", "verify_backup"]),
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(Path(REPO) / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_schedule_tasks_and_defaults(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    schedule, task_ids = EXPECTED[dag_id]
    assert dag.schedule == schedule
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "shopsentry" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and dag_id in dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == task_ids
    from shopsentry.pipelines.orchestration import on_dag_failure, on_dag_success

    assert on_dag_success in _callbacks(dag.on_success_callback)
    assert on_dag_failure in _callbacks(dag.on_failure_callback)
    for task in dag.tasks:
        assert task.owner == "data-engineering"
        assert task.retries == 3
        assert task.retry_delay == timedelta(minutes=5)
        assert task.execution_timeout == timedelta(hours=2)
        assert task.depends_on_past is False
        # Terminal errors fail at once, transient ones use the retries above.
        assert getattr(task.python_callable, "retry_by_error", False), task.task_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_one_hour_sla_is_a_deadline_alert(dagbag, dag_id: str) -> None:
    from airflow.sdk import DeadlineReference

    deadlines = dag_deadlines(dagbag.dags[dag_id])
    assert len(deadlines) == 1
    alert = deadlines[0]
    assert alert.interval == timedelta(hours=1)
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.callback.path == "shopsentry.pipelines.sla.deadline_missed"
    assert alert.callback.kwargs["dag_id"] == dag_id


def dag_deadlines(dag) -> list:
    value = dag.deadline
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _callbacks(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
