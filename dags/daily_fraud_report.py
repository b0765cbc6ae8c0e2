"""
### daily_fraud_report

Every day at 06:00 UTC: the fraud team's report for the previous day, an HTML page
with charts (alerts, confirmed fraud, precision from analyst reviews, top scenarios,
revenue, detection latency) written to `<data dir>/reports/fraud-report-YYYY-MM-DD.html`.
Rerunning a day rewrites the same file.

First `refresh_monitoring` rebuilds the warehouse's model monitoring (live quality, label
maturity, score and feature drift of each day, with labels known by the end of the report
day; `shopsentry batch run model_monitoring --date DAY` runs the same code), so the
report's model section and the API's `/v1/models/quality|drift` show the day's drift.
Then `write_report` runs `shopsentry.pipelines.daily_fraud_report`, reading the warehouse
read-only; `shopsentry batch run daily_fraud_report` runs the same code.
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
    def refresh_monitoring() -> dict[str, Any]:
        from shopsentry.pipelines.common import Interval
        from shopsentry.pipelines.model_monitoring import model_monitoring
        from shopsentry.pipelines.orchestration import day_before, settings_from_env

        as_of = Interval.day(day_before(dict(get_current_context()))).end
        built = model_monitoring(settings_from_env(), as_of)
        return {"as_of": as_of.isoformat(), "models_built": built.models_built}

    @task
    @retry_by_error
    def write_report() -> dict[str, Any]:
        from shopsentry.pipelines.daily_fraud_report import daily_fraud_report as report
        from shopsentry.pipelines.orchestration import day_before, settings_from_env

        day = day_before(dict(get_current_context()))
        return report(settings_from_env(), day).as_dict()

    refresh_monitoring() >> write_report()


daily_fraud_report()
