"""
### daily_fraud_report

Every day at 06:00 UTC: the fraud team's report for the previous day, an HTML page
with charts (alerts, confirmed fraud, precision from analyst reviews, top scenarios,
revenue, detection latency) written to `<data dir>/reports/fraud-report-YYYY-MM-DD.html`.
Reads the warehouse read-only; rerunning a day rewrites the same file.

Runs `shopsentry.pipelines.daily_fraud_report`; `shopsentry batch run daily_fraud_report`
runs the same code.
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
    dag_id="daily_fraud_report",
    schedule="0 6 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopsentry", "fraud", "report"],
    doc_md=__doc__,
    deadline=sla_deadline("daily_fraud_report"),
    on_success_callback=on_dag_success,
    on_failure_callback=on_dag_failure,
)
def daily_fraud_report() -> None:
    @task
    @retry_by_error
    def write_report() -> dict[str, Any]:
        from datetime import timedelta

        from shopsentry.pipelines.daily_fraud_report import daily_fraud_report as report
        from shopsentry.pipelines.orchestration import run_instant, settings_from_env

        day = (run_instant(dict(get_current_context())) - timedelta(days=1)).date()
        return report(settings_from_env(), day).as_dict()

    write_report()


daily_fraud_report()
