"""Prometheus metrics of one detector worker, served on its own port.

Each worker process has its own registry and HTTP port (base port + worker index), so no
multiprocess shared-memory mode is needed and Prometheus scrapes workers as separate
instances. Histograms here are observed per micro-batch with numpy
(:class:`BatchHistogram`): ``prometheus_client``'s ``Histogram.observe`` takes a lock and
walks the buckets in Python for every value, which at 20,000 events/s would cost more
than the features themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
STAGES: tuple[str, ...] = ("parse", "features", "score", "produce", "commit")
# The e2e clock: from the input record's log timestamp (when the source appended it) to
# the moment the decision is durable. ``occurred_at`` would mislead under the
# simulator's accelerated clock, so the label says which start was used.
E2E_SINCE = "log_timestamp"


class BatchHistogram:
    """A Prometheus histogram fed whole arrays at once (one ``searchsorted`` per batch)."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._upper = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray | Sequence[float]) -> None:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        # Prometheus buckets are "less than or equal": side="left" puts v == bound inside it.
        idx = np.searchsorted(self._upper, arr, side="left")
        counts = np.bincount(idx, minlength=self._counts.size)
        with self._lock:
            self._counts += counts
            self._sum += float(arr.sum())

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` buckets including ``+Inf``, and the sum."""
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        bounds = [*(repr(float(b)) for b in self._upper), "+Inf"]
        return [(le, float(c)) for le, c in zip(bounds, cumulative, strict=True)], total

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._counts.sum())

    def quantile(self, q: float) -> float:
        """An upper-bound estimate (the bucket bound holding quantile ``q``): for tests and logs."""
        with self._lock:
            counts = self._counts.copy()
        total = counts.sum()
        if total == 0:
            return float("nan")
        rank = np.searchsorted(np.cumsum(counts), q * total, side="left")
        return float(self._upper[rank]) if rank < self._upper.size else float("inf")


class _HistogramCollector(Collector):
    def __init__(self, name: str, doc: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.label_names = list(label_names)
        self.children: dict[tuple[str, ...], BatchHistogram] = {}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> BatchHistogram:
        child = self.children.get(values)
        if child is None:
            with self._lock:
                child = self.children.setdefault(values, BatchHistogram())
        return child

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.label_names)
        for values, child in list(self.children.items()):
            buckets, total = child.snapshot()
            family.add_metric(list(values), buckets, total)
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.doc, labels=self.label_names)]


class WorkerMetrics:
    """Every metric a detector worker exposes (names from the shared brief)."""

    def __init__(self) -> None:
        # One registry per worker; the families are registered (and so exposed) in the
        # order below, grouped by what they watch.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._add_flow_metrics(r)
        # The champion's reloads and version, and the lag of the partitions it scores.
        self.model_reloads = Counter(
            "shopsentry_model_reloads",
            "Champion reload attempts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "shopsentry_consumer_lag",
            "Records behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.model_version_info = Gauge(
            "shopsentry_model_version_info",
            "1 for the model version now scoring.",
            ["version"],
            registry=r,
        )
        self._add_challenger_metrics(r)
        self._add_rule_metrics(r)
        self.in_flight = Gauge(
            "shopsentry_in_flight_events", "Events polled but not yet committed.", registry=r
        )
        self._add_latency_histograms(r)
        self._version: str | None = None
        self._challenger: str | None = None

    def _add_flow_metrics(self, r: CollectorRegistry) -> None:
        """What became of the input records: handled, decided, alerted, dead-lettered,
        or skipped as a redelivery, a retry or an already decided replay."""
        self.events_processed = Counter(
            "shopsentry_events_processed",
            "Input events handled (valid or not).",
            ["topic"],
            registry=r,
        )
        self.decisions = Counter(
            "shopsentry_decisions", "Decisions made, by band.", ["band"], registry=r
        )
        self.alerts = Counter(
            "shopsentry_alerts", "Fraud alerts raised, by severity.", ["severity"], registry=r
        )
        self.dead_letter = Counter(
            "shopsentry_dead_letter",
            "Events sent to the dead-letter topic, by stage.",
            ["stage"],
            registry=r,
        )
        self.redelivered = Counter(
            "shopsentry_redelivered_skipped",
            "Redelivered records skipped because their offset was already applied to the state.",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "shopsentry_duplicate_events",
            "Events dropped because their user posted the same event_id recently (a retry).",
            ["topic"],
            registry=r,
        )
        self.replayed_decisions_kept = Counter(
            "shopsentry_replayed_decisions_kept",
            "Replayed purchases (after a restore) whose decision already on the log was kept.",
            registry=r,
        )

    def _add_challenger_metrics(self, r: CollectorRegistry) -> None:
        """The challenger beside the champion (docs/model-ops.md)."""
        self.challenger_reloads = Counter(
            "shopsentry_challenger_reloads",
            "Challenger load attempts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.challenger_version_info = Gauge(
            "shopsentry_challenger_version_info",
            "1 for the challenger version now scoring beside the champion.",
            ["version"],
            registry=r,
        )
        self.challenger_scored = Counter(
            "shopsentry_challenger_scored",
            "Purchases the challenger scored (in shadow or for its split).",
            registry=r,
        )
        self.challenger_served = Counter(
            "shopsentry_challenger_served",
            "Purchases the challenger decided (split mode; 0 in shadow).",
            registry=r,
        )
        self.challenger_band_pairs = Counter(
            "shopsentry_challenger_band_pairs",
            "Purchases scored by both models, by the champion's and the challenger's band "
            "(agreement: the pairs with equal bands over all).",
            ["champion_band", "challenger_band"],
            registry=r,
        )

    def _add_rule_metrics(self, r: CollectorRegistry) -> None:
        """The analysts' rules: hits and errors per rule, and the rule-set version."""
        self.rule_hits = Counter(
            "shopsentry_rule_hits",
            "Purchases an analyst rule fired on, by rule and mode (shadow rules never act).",
            ["rule", "mode"],
            registry=r,
        )
        self.rule_errors = Counter(
            "shopsentry_rule_errors",
            "Purchases on which a rule erred (a missing value, a division by zero).",
            ["rule"],
            registry=r,
        )
        self.rule_set_version = Gauge(
            "shopsentry_rule_set_version", "The rule-set version this worker applies.", registry=r
        )

    def _add_latency_histograms(self, r: CollectorRegistry) -> None:
        """End-to-end, per-stage and scorer latency, fed a micro-batch at a time
        (:class:`BatchHistogram`), with the children the hot path observes."""
        self._e2e = _HistogramCollector(
            "shopsentry_end_to_end_latency_seconds",
            "Input record log timestamp to decision durable (label since names the start clock).",
            ["since"],
        )
        self._stage = _HistogramCollector(
            "shopsentry_stage_latency_seconds",
            "Time per pipeline stage per micro-batch.",
            ["stage"],
        )
        self._prediction = _HistogramCollector(
            "shopsentry_prediction_latency_seconds", "One scorer call (a whole micro-batch).", []
        )
        for collector in (self._e2e, self._stage, self._prediction):
            r.register(collector)
        self.e2e = self._e2e.labels(E2E_SINCE)
        self.stage = {name: self._stage.labels(name) for name in STAGES}
        self.prediction = self._prediction.labels()

    def set_challenger_version(self, version: str | None) -> None:
        """The challenger version now scoring, or None for none."""
        if self._challenger is not None:
            self.challenger_version_info.remove(self._challenger)
        self._challenger = version
        if version is not None:
            self.challenger_version_info.labels(version).set(1)

    def set_model_version(self, version: str) -> None:
        if self._version is not None:
            self.model_version_info.remove(self._version)
        self.model_version_info.labels(version).set(1)
        self._version = version

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag gauges by ``lags`` (partitions no longer owned disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host``:``port`` from a daemon thread.

        Loopback by default; inside a container network the host is ``0.0.0.0`` so that
        Prometheus, another container, can reach it.
        """
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            from shopsentry.errors import ConfigError

            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                hint="pick another --metrics-port base (worker i uses base + i) or 0 to disable",
            ) from exc
        logger.info("metrics on http://%s:%d/metrics", host, port)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0 when absent): for tests, the CLI summary and benchmarks."""
        sample = self.registry.get_sample_value(name, labels or {})
        return float(sample) if sample is not None else 0.0
