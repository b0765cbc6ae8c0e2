"""Little's law against the running system: measured λ, W and L from live metrics.

The detector workers expose ``events_processed_total`` (arrivals they handled),
``stage_latency_seconds{stage}`` (time spent per stage), ``end_to_end_latency_seconds``
and the ``in_flight_events`` gauge. Scraping them at the start and end of an interval
gives λ = Δevents / Δt and the busy time per event = Σ Δstage-seconds / Δevents (right
whether a stage is timed per event or per batch). Sampling the gauge several times in
between gives the measured L to set beside λ·W: when the two disagree, an event spends
time somewhere the stage timers do not see (queues, batching waits).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from shopsentry.errors import TransientError
from shopsentry.monitoring.capacity import ScalingPlan, scaling_plan
from shopsentry.monitoring.metrics_reader import Scrape, scrape_all

logger = logging.getLogger(__name__)

EVENTS = "events_processed_total"
STAGE = "stage_latency_seconds"
END_TO_END = "end_to_end_latency_seconds"
PREDICTION = "prediction_latency_seconds"
IN_FLIGHT = "in_flight_events"
LAG = "consumer_lag"


class NothingToMeasure(TransientError):
    """No metrics endpoint answered, or nothing was processed during the interval."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """What the running system did over one interval, and what it means for capacity."""

    interval_s: float
    targets: tuple[str, ...]
    unreachable: dict[str, str]
    workers: int
    events: float
    arrival_per_s: float
    arrival_by_topic_per_s: dict[str, float]
    stage_mean_ms: dict[str, float]
    busy_s_per_event: float | None
    events_per_batch: float | None
    end_to_end_mean_s: float | None
    prediction_mean_s: float | None
    l_measured: float | None
    l_from_busy: float | None
    l_from_end_to_end: float | None
    per_worker_per_s: float | None
    capacity_per_s: float | None
    utilisation: float | None
    consumer_lag: float | None
    target_per_s: float | None = None
    headroom: float | None = None
    workers_for_target: int | None = None
    scaling: ScalingPlan | None = None
    samples: int = 2
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scaling"] = self.scaling.to_dict() if self.scaling else None
        return data


def _delta_ratio(
    first: list[Scrape], last: list[Scrape], num: str, den: str, **match: str
) -> float | None:
    d_num = sum(
        b.total(num, **match) - a.total(num, **match) for a, b in zip(first, last, strict=True)
    )
    d_den = sum(
        b.total(den, **match) - a.total(den, **match) for a, b in zip(first, last, strict=True)
    )
    return d_num / d_den if d_den > 0 else None


def analyse(
    rounds: Sequence[Sequence[Scrape]],
    *,
    target_per_s: float | None = None,
    unreachable: dict[str, str] | None = None,
    min_workers: int = 2,
) -> Measurement:
    """Turn ≥ 2 rounds of scrapes (same targets, same order, oldest first) into a Measurement."""
    if len(rounds) < 2 or not rounds[0]:
        raise NothingToMeasure(
            "need two scrapes of at least one endpoint", hint="check the --measure URLs"
        )
    first, last = list(rounds[0]), list(rounds[-1])
    interval = sum(b.at - a.at for a, b in zip(first, last, strict=True)) / len(first)
    if interval <= 0:
        raise NothingToMeasure("the scrapes span no time", hint="pass --interval > 0")

    # Workers are the endpoints that time stages; λ comes from them so an API that also
    # counts ingested events is not added on top of the detectors' count.
    worker_idx = [i for i, s in enumerate(last) if s.has(STAGE + "_count")]
    counted = worker_idx or list(range(len(last)))
    wf, wl = [first[i] for i in counted], [last[i] for i in counted]
    flow = _arrivals(wf, wl, interval)
    timed = _stage_times(wf, wl, flow.events)
    e2e = _delta_ratio(first, last, END_TO_END + "_sum", END_TO_END + "_count")
    prediction = _delta_ratio(first, last, PREDICTION + "_sum", PREDICTION + "_count")
    lag = sum(s.total(LAG) for s in last) if any(s.has(LAG) for s in last) else None

    workers = len(worker_idx)
    busy = timed.busy_s_per_event
    per_worker = 1.0 / busy if busy else None
    capacity = per_worker * workers if per_worker and workers else None
    warnings = [
        *flow.warnings,
        *_load_warnings(flow.events, timed.events_per_batch, flow.per_s, capacity),
    ]
    sizing = _Sizing.of(target_per_s, per_worker, capacity, min_workers)
    return Measurement(
        interval_s=interval,
        targets=tuple(s.url for s in last),
        unreachable=dict(unreachable or {}),
        workers=workers,
        events=flow.events,
        arrival_per_s=flow.per_s,
        arrival_by_topic_per_s=flow.by_topic_per_s,
        stage_mean_ms=timed.mean_ms,
        busy_s_per_event=busy,
        events_per_batch=timed.events_per_batch,
        end_to_end_mean_s=e2e,
        prediction_mean_s=prediction,
        l_measured=_mean_in_flight(rounds),
        l_from_busy=flow.per_s * busy if busy is not None else None,
        l_from_end_to_end=flow.per_s * e2e if e2e is not None else None,
        per_worker_per_s=per_worker,
        capacity_per_s=capacity,
        utilisation=flow.per_s / capacity if capacity else None,
        consumer_lag=lag,
        target_per_s=target_per_s,
        headroom=sizing.headroom,
        workers_for_target=sizing.workers_for_target,
        scaling=sizing.scaling,
        samples=len(rounds),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class _Arrivals:
    """λ over the interval: the events the workers processed, in total and per topic."""

    events: float
    per_s: float
    by_topic_per_s: dict[str, float]
    warnings: tuple[str, ...]


def _arrivals(first: list[Scrape], last: list[Scrape], interval: float) -> _Arrivals:
    events = sum(b.total(EVENTS) - a.total(EVENTS) for a, b in zip(first, last, strict=True))
    warnings: tuple[str, ...] = ()
    if events < 0:
        warnings = ("a counter went backwards (a process restarted): λ is unreliable",)
        events = 0.0
    by_topic: dict[str, float] = {}
    for a, b in zip(first, last, strict=True):
        before = a.by_label(EVENTS, "topic")
        for topic, value in b.by_label(EVENTS, "topic").items():
            by_topic[topic] = by_topic.get(topic, 0.0) + (value - before.get(topic, 0.0)) / interval
    return _Arrivals(events, events / interval, by_topic, warnings)


@dataclass(frozen=True, slots=True)
class _StageTimes:
    """W from the stage timers: each stage's mean, the busy time per event, the batch size."""

    mean_ms: dict[str, float]
    busy_s_per_event: float | None
    events_per_batch: float | None


def _stage_times(first: list[Scrape], last: list[Scrape], events: float) -> _StageTimes:
    stages = sorted({s for scrape_ in last for s in scrape_.by_label(STAGE + "_count", "stage")})

    def delta(name: str, stage: str) -> float:
        return sum(
            b.total(name, stage=stage) - a.total(name, stage=stage)
            for a, b in zip(first, last, strict=True)
        )

    mean_ms: dict[str, float] = {}
    stage_seconds = 0.0
    for stage in stages:
        mean = _delta_ratio(first, last, STAGE + "_sum", STAGE + "_count", stage=stage)
        if mean is not None:
            mean_ms[stage] = mean * 1000.0
        stage_seconds += delta(STAGE + "_sum", stage)
    busy = stage_seconds / events if events > 0 and stage_seconds > 0 else None
    # Stages timed per micro-batch are observed less often than events arrive; the
    # least-observed stage gives the mean batch size.
    observations = [delta(STAGE + "_count", stage) for stage in stages]
    batches = min((n for n in observations if n > 0), default=0.0)
    events_per_batch = events / batches if batches and events > 0 else None
    return _StageTimes(mean_ms, busy, events_per_batch)


def _mean_in_flight(rounds: Sequence[Sequence[Scrape]]) -> float | None:
    """The measured L: the in-flight gauge summed over endpoints, averaged over rounds."""
    gauge_rounds = [r for r in rounds if any(s.has(IN_FLIGHT) for s in r)]
    if not gauge_rounds:
        return None
    return sum(sum(s.total(IN_FLIGHT) for s in r) for r in gauge_rounds) / len(gauge_rounds)


def _load_warnings(
    events: float, events_per_batch: float | None, arrival: float, capacity: float | None
) -> list[str]:
    """What makes this interval a weak basis for the capacity figures."""
    warnings: list[str] = []
    if events == 0:
        warnings.append(
            "no events were processed during the interval:"
            " run the simulator, or lengthen --interval"
        )
    if (
        events_per_batch is not None
        and events_per_batch < 2
        and capacity
        and arrival / capacity < 0.1
    ):
        warnings.append(
            f"batches averaged {events_per_batch:.1f} event(s) at this light load: per-batch "
            "costs (commit, produce) are shared by more events under load, so the capacity "
            "is a lower bound"
        )
    return warnings


@dataclass(frozen=True, slots=True)
class _Sizing:
    """Against a target rate: the headroom, the workers it needs and the scaling plan."""

    headroom: float | None = None
    workers_for_target: int | None = None
    scaling: ScalingPlan | None = None

    @classmethod
    def of(
        cls,
        target_per_s: float | None,
        per_worker: float | None,
        capacity: float | None,
        min_workers: int,
    ) -> _Sizing:
        if target_per_s is None or not per_worker:
            return cls()
        return cls(
            headroom=capacity / target_per_s if capacity else None,
            workers_for_target=max(min_workers, math.ceil(round(target_per_s / per_worker, 9))),
            scaling=scaling_plan(target_per_s, per_worker, min_workers=min_workers),
        )


def measure(
    urls: Sequence[str],
    *,
    interval_s: float,
    samples: int = 5,
    target_per_s: float | None = None,
    timeout: float = 5.0,
    stop: threading.Event | None = None,
    on_sample: Callable[[int, int], None] | None = None,
) -> Measurement:
    """Scrape ``urls`` ``samples`` times spread evenly over ``interval_s`` and analyse.

    Endpoints that do not answer the first scrape are left out (and reported); one that
    stops answering midway is dropped from every round so deltas stay like for like.
    """
    samples = max(2, samples)
    stop = stop or threading.Event()
    with httpx.Client(timeout=timeout) as client:
        first, unreachable = scrape_all(urls, client=client, timeout=timeout)
        if not first:
            raise NothingToMeasure(
                f"no metrics endpoint answered ({', '.join(urls)})",
                hint="start `shopsentry detect` / `serve`, or pass --measure URL",
            )
        live = [s.url for s in first]
        rounds: list[list[Scrape]] = [first]
        if on_sample:
            on_sample(1, samples)
        start = time.monotonic()
        for i in range(1, samples):
            wait = start + interval_s * i / (samples - 1) - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            got, failed = scrape_all(live, client=client, timeout=timeout)
            unreachable.update(failed)
            if failed:
                keep = {s.url for s in got}
                rounds = [[s for s in r if s.url in keep] for r in rounds]
                live = [u for u in live if u in keep]
            rounds.append(got)
            if on_sample:
                on_sample(i + 1, samples)
    if not live:
        raise NothingToMeasure(
            "every metrics endpoint stopped answering", hint="are the services still running?"
        )
    return analyse(rounds, target_per_s=target_per_s, unreachable=unreachable)
