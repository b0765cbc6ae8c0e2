"""What watches a detector worker's stream: metrics, its summary, benchmark latencies.

Observers of :class:`~shopsentry.stream.runtime.StreamRuntime`: they run after each batch
is durable and committed (or fenced), never inside the commit step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import Counter, Gauge

from shopsentry.detection.hot_path import BatchOutcome
from shopsentry.detection.metrics import WorkerMetrics
from shopsentry.stream.base import BatchReport, ObserverBase

# Raw end-to-end samples kept for benchmarks (float32, 4 bytes each).
MAX_LATENCY_SAMPLES = 5_000_000


@dataclass
class WorkerSummary:
    index: int
    records: int = 0
    purchases: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    fenced: int = 0  # batches whose state save another worker's newer state refused
    batches: int = 0
    errors: int = 0  # transient failures retried
    elapsed_s: float = 0.0
    model_versions: list[str] = field(default_factory=list)
    # Wall-clock (epoch s) bounds of the busy period: throughput excludes start-up and idling.
    first_batch_wall: float = 0.0
    last_batch_wall: float = 0.0
    # CPU seconds of this process over the same period: throughput per core on a shared machine.
    busy_cpu_s: float = 0.0

    @property
    def purchases_per_s(self) -> float:
        busy = self.last_batch_wall - self.first_batch_wall
        return self.purchases / busy if busy > 0 else 0.0


class SummaryObserver(ObserverBase):
    """Counts into :class:`WorkerSummary` (what the supervisor and benchmarks read)."""

    def __init__(self, summary: WorkerSummary) -> None:
        self.summary = summary
        self._first_cpu = 0.0

    def on_batch(self, report: BatchReport) -> None:
        s = self.summary
        now = time.time()
        if not s.first_batch_wall:
            s.first_batch_wall = now
            self._first_cpu = time.process_time()
        s.batches += 1
        s.records += report.records
        s.skipped += sum(report.skipped_by_topic.values())
        s.fenced += report.fenced
        outcome = report.result.detail
        if isinstance(outcome, BatchOutcome):
            s.purchases += outcome.purchases
            s.dead_lettered += sum(outcome.dead_letters.values())
        s.last_batch_wall = now
        s.busy_cpu_s = time.process_time() - self._first_cpu

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        self.summary.errors += 1


class MetricsObserver:
    """Feeds :class:`WorkerMetrics`; a ``shopsentry_degraded`` gauge is 1 while the
    stream retries a transient failure (the metrics endpoint keeps answering)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        r = metrics.registry
        self.degraded = Gauge(
            "shopsentry_degraded",
            "1 while the worker backs off and retries a transient failure.",
            registry=r,
        )
        self.errors = Counter(
            "shopsentry_stream_errors",
            "Transient failures the worker backed off from, by error type.",
            ["error"],
            registry=r,
        )

    def on_batch(self, report: BatchReport) -> None:
        m = self.metrics
        for topic, n in report.skipped_by_topic.items():
            m.redelivered.labels(topic).inc(n)
        outcome = report.result.detail
        if not isinstance(outcome, BatchOutcome):
            return
        for topic, n in outcome.events_by_topic.items():
            m.events_processed.labels(topic).inc(n)
        for band, n in outcome.bands.items():
            m.decisions.labels(band).inc(n)
        for severity, n in outcome.severities.items():
            m.alerts.labels(severity).inc(n)
        for stage, n in outcome.dead_letters.items():
            m.dead_letter.labels(stage).inc(n)
        for topic, n in outcome.duplicates.items():
            m.duplicates.labels(topic).inc(n)
        for (rule, mode), n in outcome.rule_hits.items():
            m.rule_hits.labels(rule, mode).inc(n)
        for rule, n in outcome.rule_errors.items():
            m.rule_errors.labels(rule).inc(n)
        if outcome.challenger_version is not None:
            m.challenger_scored.inc(outcome.purchases)
            m.challenger_served.inc(outcome.challenger_served)
            for (champion_band, challenger_band), n in outcome.challenger_bands.items():
                m.challenger_band_pairs.labels(champion_band, challenger_band).inc(n)

        stages = {**outcome.stages_s, **report.stages_s}
        for stage, seconds in stages.items():
            m.stage[stage].observe(seconds)
        if outcome.prediction_s is not None:
            m.prediction.observe(outcome.prediction_s)
        if outcome.timestamps_ms and not report.fenced:
            m.e2e.observe_many(e2e_seconds(report, outcome))

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        self.degraded.set(1)
        self.errors.labels(type(error).__name__).inc()

    def on_recovered(self) -> None:
        self.degraded.set(0)


class LatencySampler(ObserverBase):
    """Keeps raw end-to-end latencies for benchmarks and writes them (.npy) at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._samples: list[np.ndarray] = []
        self._count = 0

    def on_batch(self, report: BatchReport) -> None:
        outcome = report.result.detail
        if (
            isinstance(outcome, BatchOutcome)
            and outcome.timestamps_ms
            and not report.fenced
            and self._count < MAX_LATENCY_SAMPLES
        ):
            e2e = e2e_seconds(report, outcome).astype(np.float32)
            self._samples.append(e2e)
            self._count += e2e.size

    def write(self) -> None:
        samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.save(self.path, samples)


def e2e_seconds(report: BatchReport, outcome: BatchOutcome) -> np.ndarray:
    """Per decided purchase: its log timestamp to the moment its decision was durable."""
    return (report.durable_ms - np.asarray(outcome.timestamps_ms, dtype=np.int64)) / 1000.0
