"""Metric definitions shared between parts, and the catalogue of the design's metrics.

Most metrics live with the code that updates them (the detector in
``detection/metrics.py``, the service in ``api/metrics.py``, the notifier in
``notify/notifier.py``). Two do not have a long-lived process of their own:

* ``dag_runs_total{dag,state}``: DAG runs finish inside short-lived Airflow task
  processes, so a counter in memory would die with them. :func:`record_dag_run` adds
  one run to a small SQLite table in the state dir, and :class:`DagRunsCollector`
  (registered by a long-lived process, e.g. the API) reads it at scrape time, the same
  way Prometheus exporters read a system's own bookkeeping.
* ``query_duration_seconds{query}``: any process that runs warehouse queries builds it
  into its own registry with :func:`query_duration_histogram`, so the name, type and
  buckets stay the same everywhere.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# The design's Component-5 metrics as exposed (family name → Prometheus type).
DESIGN_METRICS: dict[str, str] = {
    "shopsentry_events_processed_total": "counter",
    "shopsentry_decisions_total": "counter",
    "shopsentry_alerts_total": "counter",
    "shopsentry_dead_letter_total": "counter",
    "shopsentry_consumer_lag": "gauge",
    "shopsentry_end_to_end_latency_seconds": "histogram",
    "shopsentry_stage_latency_seconds": "histogram",
    "shopsentry_prediction_latency_seconds": "histogram",
    "shopsentry_model_version_info": "gauge",
    "shopsentry_in_flight_events": "gauge",
    "shopsentry_dag_runs_total": "counter",
    "shopsentry_query_duration_seconds": "histogram",
    "shopsentry_false_positive_rate": "gauge",
    "shopsentry_fraud_detection_rate": "gauge",
    "shopsentry_notifications_total": "counter",
}

DagState = Literal["success", "failed"]
QUERY_BUCKETS: tuple[float, ...] = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

_SCHEMA = """
create table if not exists dag_runs (
    dag       text not null,
    state     text not null,
    runs      integer not null,
    last_at   real not null,
    primary key (dag, state)
)
"""


def dag_runs_path(state_dir: Path) -> Path:
    """The run table under the data dir's state directory (``Settings.state_dir``)."""
    return state_dir / "dag-runs.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute(_SCHEMA)
    return conn


def record_dag_run(path: Path, dag: str, state: DagState) -> None:
    """Count one finished DAG run in the run table at ``path`` (:func:`dag_runs_path`);
    call it from the DAG's success/failure callback."""
    conn = _connect(path)
    try:
        conn.execute(
            "insert into dag_runs (dag, state, runs, last_at) values (?, ?, 1, ?) "
            "on conflict (dag, state) do update set runs = runs + 1, last_at = excluded.last_at",
            (dag, state, time.time()),
        )
    finally:
        conn.close()


def dag_run_counts(path: Path) -> dict[tuple[str, str], int]:
    """{(dag, state): runs} recorded so far in the run table at ``path``."""
    if not path.exists():
        return {}
    conn = _connect(path)
    try:
        return {(d, s): int(n) for d, s, n in conn.execute("select dag, state, runs from dag_runs")}
    finally:
        conn.close()


class DagRunsCollector(Collector):
    """Exposes ``shopsentry_dag_runs_total{dag,state}`` from the run table at scrape time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "shopsentry_dag_runs",
            "Finished DAG runs by DAG and final state.",
            labels=["dag", "state"],
        )
        for (dag, state), runs in sorted(dag_run_counts(self.path).items()):
            family.add_metric([dag, state], runs)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("shopsentry_dag_runs", "", labels=["dag", "state"])


def query_duration_histogram(registry: CollectorRegistry) -> Histogram:
    """``shopsentry_query_duration_seconds{query}`` in ``registry`` (the design: p95 < 30 s)."""
    return Histogram(
        "shopsentry_query_duration_seconds",
        "Warehouse query time by named query.",
        ["query"],
        buckets=QUERY_BUCKETS,
        registry=registry,
    )
