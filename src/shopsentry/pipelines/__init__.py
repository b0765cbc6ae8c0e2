"""Batch jobs, as plain functions taking Settings and an interval or a date.

    hourly_etl(settings, interval)            log → RAW → dbt build → quality checks
    daily_fraud_report(settings, day)         HTML report with charts in reports_dir
    weekly_model_retrain(settings, as_of)     training set → train → gate → promote
    retention(settings, today)                hot → warm → cold storage tiers (lake)

`shopsentry batch run JOB` and the Airflow DAGs in ``dags/`` call these same functions.
"""

from __future__ import annotations

from shopsentry.pipelines.common import Interval, Progress
from shopsentry.pipelines.daily_fraud_report import ReportResult, daily_fraud_report
from shopsentry.pipelines.hourly_etl import EtlResult, hourly_etl
from shopsentry.pipelines.weekly_model_retrain import RetrainResult, weekly_model_retrain

JOBS = ("hourly_etl", "daily_fraud_report", "weekly_model_retrain", "retention")

__all__ = [
    "JOBS",
    "EtlResult",
    "Interval",
    "Progress",
    "ReportResult",
    "RetrainResult",
    "daily_fraud_report",
    "hourly_etl",
    "weekly_model_retrain",
]
