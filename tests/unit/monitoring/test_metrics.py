"""Shared metric definitions: DAG runs survive the process that recorded them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from shopsentry.config import Settings
from shopsentry.monitoring.metrics import (
    DESIGN_METRICS,
    DagRunsCollector,
    dag_run_counts,
    dag_runs_path,
    query_duration_histogram,
    record_dag_run,
)
from shopsentry.monitoring.metrics_reader import parse_metrics


def test_dag_runs_are_counted_across_processes_and_exposed(settings: Settings) -> None:
    registry = CollectorRegistry()
    registry.register(DagRunsCollector(dag_runs_path(settings.state_dir)))
    assert b"shopsentry_dag_runs_total{" not in generate_latest(registry)

    record_dag_run(dag_runs_path(settings.state_dir), "hourly_etl", "success")
    record_dag_run(dag_runs_path(settings.state_dir), "hourly_etl", "success")
    record_dag_run(dag_runs_path(settings.state_dir), "hourly_etl", "failed")

    assert dag_run_counts(dag_runs_path(settings.state_dir)) == {
        ("hourly_etl", "success"): 2,
        ("hourly_etl", "failed"): 1,
    }
    samples = parse_metrics(generate_latest(registry).decode())
    assert samples[("shopsentry_dag_runs_total", (("dag", "hourly_etl"), ("state", "failed")))] == 1
    assert (
        samples[("shopsentry_dag_runs_total", (("dag", "hourly_etl"), ("state", "success")))] == 2
    )


def test_query_histogram_has_the_catalogued_name() -> None:
    registry = CollectorRegistry()
    query_duration_histogram(registry).labels("daily_sales").observe(0.2)
    samples = parse_metrics(generate_latest(registry).decode())
    assert samples[("shopsentry_query_duration_seconds_count", (("query", "daily_sales"),))] == 1
    assert DESIGN_METRICS["shopsentry_query_duration_seconds"] == "histogram"
