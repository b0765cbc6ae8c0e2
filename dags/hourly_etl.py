"""
### hourly_etl

The design's Flow 2, every hour: drain the event log into the warehouse's RAW layer
(idempotent on event_id, offsets recorded in DuckDB), `dbt build` the staging,
analytics and feature models that changed, then check source freshness.

* **Lake**: what the load added is written to the lake as compressed Parquet by event
  kind and date (idempotent: a partition is rewritten whole, never appended to).
* **Backfill**: trigger with conf `{"history": "/path/to/dir"}` to load Parquet/JSONL
  history instead of the log; the days it touches are rebuilt.
* **Retries**: every step is idempotent, so a retried task continues without duplicates.
* **SLA**: a deadline alert fires if a run is not done one hour after it was queued.

Runs `shopsentry.pipelines.hourly_etl`; `shopsentry batch run hourly_etl` runs the same code.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from shopsentry.pipelines.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    on_dag_failure,
    on_dag_success,
    retry_by_error,
    sla_deadline,
)


@dag(
    dag_id="hourly_etl",
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopsentry", "warehouse", "etl"],
    doc_md=__doc__,
    deadline=sla_deadline("hourly_etl"),
    on_success_callback=on_dag_success,
    on_failure_callback=on_dag_failure,
    params={"history": Param(None, type=["null", "string"], description="history dir to backfill")},
)
def hourly_etl() -> None:
    @task
    @retry_by_error
    def extract_load() -> dict[str, Any]:
        from pathlib import Path

        from shopsentry.pipelines.hourly_etl import extract_load as load
        from shopsentry.pipelines.orchestration import settings_from_env

        history = get_current_context()["params"].get("history")
        result = load(settings_from_env(), history=Path(history) if history else None)
        return {"records_read": result.records_read, "rows_inserted": result.inserted}

    @task
    @retry_by_error
    def write_lake() -> dict[str, Any]:
        from shopsentry.pipelines.hourly_etl import write_lake as export
        from shopsentry.pipelines.orchestration import settings_from_env

        return export(settings_from_env()).as_dict()

    @task
    @retry_by_error
    def transform() -> dict[str, Any]:
        from shopsentry.pipelines.hourly_etl import transform as build
        from shopsentry.pipelines.orchestration import settings_from_env

        result = build(settings_from_env())
        return {"models_built": result.models_built, "checks_passed": result.tests_passed}

    @task
    @retry_by_error
    def quality_checks() -> dict[str, Any]:
        from shopsentry.pipelines.hourly_etl import check_quality
        from shopsentry.pipelines.orchestration import hour_before, settings_from_env

        interval = hour_before(dict(get_current_context()))
        summary, warnings = check_quality(settings_from_env(), interval)
        return {"interval": str(interval), "summary": summary, "warnings": warnings}

    extract_load() >> write_lake() >> transform() >> quality_checks()


hourly_etl()
