"""
### retention

Storage tiers, daily: RAW partitions older than `lake.hot_days` (90) leave the
warehouse once the lake holds every one of their rows (file checksums, row counts and a
checksum of the keys); warm partitions older than `lake.warm_days` (365) move to the
cold URL. A partition that cannot be verified stays in the warehouse and is reported.

* **Retries**: idempotent; a retried pass moves what the failed one did not.
* **One writer**: it deletes from DuckDB, so one run at a time.

Runs `shopsentry.pipelines.retention`; `shopsentry batch run retention` runs the same code.
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
    dag_id="retention",
    schedule="30 3 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopsentry", "warehouse", "lake"],
    doc_md=__doc__,
    deadline=sla_deadline("retention"),
    on_success_callback=on_dag_success,
    on_failure_callback=on_dag_failure,
)
def retention() -> None:
    @task
    @retry_by_error
    def move_tiers() -> dict[str, Any]:
        from shopsentry.pipelines.orchestration import run_instant, settings_from_env
        from shopsentry.pipelines.retention import retention as run

        today = run_instant(dict(get_current_context())).date()
        return run(settings_from_env(), today).as_dict()

    move_tiers()


retention()
