"""Prometheus metrics of the service.

Each app gets its own registry, so tests can build many apps in one process and a
scrape shows only this service's series. Request metrics are labelled by the route
template (``/v1/alerts/{alert_id}``), never the raw path, to keep cardinality bounded.
Review KPIs are read from the store at scrape time, so they are right after a restart.

The API is also the long-lived process that exposes the batch side's metrics: finished
DAG runs (``shopsentry_dag_runs_total``, read from the monitoring part's run table at
scrape time), the duration of the warehouse queries behind ``/v1/analytics/*``
(``shopsentry_query_duration_seconds``, the design's "query p95 < 30 s"), and live model
quality and drift (``shopsentry_model_*``, ``shopsentry_feature_psi``, read from the
warehouse's monitoring tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopsentry.monitoring.metrics import DagRunsCollector, query_duration_histogram

# The window of reviews behind the false-positive-rate gauge (the alert rule's input).
FP_RATE_WINDOW = timedelta(days=7)

if TYPE_CHECKING:
    from shopsentry.api.consumer import StoreConsumer
    from shopsentry.api.read_model import AlertReadModel


class StoreCollector(Collector):
    """Fraud KPIs and alert counts, computed from the store when scraped."""

    def __init__(self, store: AlertReadModel, consumer: StoreConsumer | None) -> None:
        self.store = store
        self.consumer = consumer

    def collect(self) -> Iterator[Metric]:
        from shopsentry.api.summary import totals

        t = totals(self.store)
        recent = self.store.review_stats(since=datetime.now(UTC) - FP_RATE_WINDOW)
        fpr = GaugeMetricFamily(
            "shopsentry_false_positive_rate",
            "False positives among alerts reviewed in the last 7 days (target < 5%).",
        )
        fp_rate = recent["false_positive_rate"]
        fpr.add_metric([], fp_rate if fp_rate is not None else 0.0)
        yield fpr
        rate = GaugeMetricFamily(
            "shopsentry_fraud_detection_rate",
            "Share of scored purchases flagged as fraud (review or decline band).",
        )
        rate.add_metric([], t["fraud_rate"] if t["fraud_rate"] is not None else 0.0)
        yield rate
        alerts = GaugeMetricFamily(
            "shopsentry_api_alerts", "Alerts in the store by review status.", labels=["status"]
        )
        alerts.add_metric(["open"], t["open"])
        alerts.add_metric(["confirmed_fraud"], t["confirmed_fraud"])
        alerts.add_metric(["false_positive"], t["false_positive"])
        yield alerts
        if self.consumer is not None and self.consumer.lag_samples:
            lag = GaugeMetricFamily(
                "shopsentry_api_observed_detector_lag",
                "Detector group lag as last sampled by the service.",
            )
            lag.add_metric([], self.consumer.lag_samples[-1][1])
            yield lag


class ApiMetrics:
    """The counters and histograms the request path updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Same name, type and buckets as every other process that times warehouse queries.
        self.query_seconds = query_duration_histogram(self.registry)
        self.requests = Counter(
            "shopsentry_api_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shopsentry_api_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.ingested = Counter(
            "shopsentry_api_events_ingested",
            "Events accepted by POST /v1/events (durable in the log).",
            ["topic", "source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "shopsentry_api_events_rejected",
            "Ingest requests refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "shopsentry_api_events_duplicate",
            "Events acknowledged without being written again (an event id posted recently).",
            registry=self.registry,
        )
        self.reviews = Counter(
            "shopsentry_api_reviews",
            "Analyst reviews recorded.",
            ["verdict"],
            registry=self.registry,
        )

    def watch_store(self, store: AlertReadModel, consumer: StoreConsumer | None) -> None:
        self.registry.register(StoreCollector(store, consumer))

    def watch_dag_runs(self, path: Path) -> None:
        """Expose the DAG run counts that Airflow callbacks and ``shopsentry batch run``
        record in the run table at ``path`` (no other long-lived process serves them)."""
        self.registry.register(DagRunsCollector(path))

    def watch_model_ops(self, warehouse: Path) -> None:
        """Expose live model quality and drift from the warehouse file ``warehouse``
        (monitoring/model_ops.py)."""
        from shopsentry.monitoring.model_ops import ModelOpsCollector

        self.registry.register(ModelOpsCollector(warehouse))
