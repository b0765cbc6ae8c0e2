"""
### weekly_model_retrain

Sundays at 02:00 UTC, the design's Flow 3: rebuild `ml_features.training_set` (point-in-time
features from the detector's own definitions, labels as known at the cut-off), train
XGBoost, evaluate on the held-out last days, and promote the new version to champion in
MLflow only if it passes the gate. The detector hot-reloads the champion.

The cut-off is the run's data-interval end; rerunning the same week reuses its outcome.
Runs `shopsentry.pipelines.weekly_model_retrain`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from shopsentry.pipelines.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    on_dag_failure,
    on_dag_success,
    retry_by_error,
    sla_deadline,
)


@dag(
    dag_id="weekly_model_retrain",
    schedule="0 2 * * 0",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopsentry", "ml", "training"],
    doc_md=__doc__,
    deadline=sla_deadline("weekly_model_retrain"),
    on_success_callback=on_dag_success,
    on_failure_callback=on_dag_failure,
)
def weekly_model_retrain() -> None:
    @task
    @retry_by_error
    def build_training_set() -> int:
        from shopsentry.pipelines.orchestration import settings_from_env
        from shopsentry.pipelines.weekly_model_retrain import build_training_set as build

        return build(settings_from_env())

    @task
    @retry_by_error
    def train_and_gate(training_rows: int) -> dict[str, Any]:
        from shopsentry.pipelines.orchestration import run_instant, settings_from_env
        from shopsentry.pipelines.weekly_model_retrain import train

        as_of = run_instant(dict(get_current_context()))
        return train(settings_from_env(), as_of, training_rows=training_rows).as_dict()

    train_and_gate(build_training_set())


weekly_model_retrain()
