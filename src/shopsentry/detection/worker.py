"""One detector worker: the hot path as a handler on the stream runtime.

The runtime (:mod:`shopsentry.stream`) owns the loop and the commit order that makes the
effects exactly-once (``docs/stream.md``):

1. save the changed user states, the applied offsets and the batch's outputs (the
   outbox) atomically — fenced: refused if another worker has applied beyond the
   offsets this one started from (it lost the partitions without noticing);
2. produce decisions / alerts / dead letters, then ``flush`` (returns = durable);
3. commit the consumer offsets without waiting (waiting when partitions are revoked).

A crash before 1 re-runs the batch from the old state, nothing of it having been sent.
A crash after 1 leaves the outbox: the partitions' next owner re-produces those bytes,
so a purchase re-decided after a crash carries the decision of the first run, whatever
other workers did to the behaviour state meanwhile. Records whose offsets the state
already holds are skipped entirely (no feature update, no output), so no feature ever
counts an event twice.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shopsentry.bus.base import EventLog, Record, TopicPartition
from shopsentry.bus.partitioner import partition_for
from shopsentry.detection.challenger import ChallengerConfig
from shopsentry.detection.dedupe import RecentEventIds
from shopsentry.detection.hot_path import FeatureOps, HotPath, HotPathConfig, StateCache
from shopsentry.detection.metrics import WorkerMetrics
from shopsentry.detection.model_reload import ModelHolder
from shopsentry.detection.observers import (
    LatencySampler,
    MetricsObserver,
    SummaryObserver,
    WorkerSummary,
)
from shopsentry.detection.routing import RoutingConfig
from shopsentry.features.state_store import StateStore, StateStoreSink
from shopsentry.rules.control import RuleSetFollower
from shopsentry.stream.base import BatchResult, Observer
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime

if TYPE_CHECKING:
    from shopsentry.backup.replay import Ledger, ReplayedDecisions
    from shopsentry.config import DetectorSettings, Settings, TopicsSettings

__all__ = [
    "DetectorHandler",
    "Worker",
    "WorkerConfig",
    "WorkerOptions",
    "WorkerSummary",
    "hot_path_config",
]

logger = logging.getLogger(__name__)

# How long one idle poll may block: bounds how fast a stop request is noticed.
IDLE_POLL_S = 0.2
LAG_REFRESH_S = 5.0
# Cyclic GC while streaming: a batch allocates thousands of short-lived containers (records,
# events, rows) that die by reference counting. At CPython's default threshold (700) they
# set off collections mid-batch, get promoted while still alive, and every few batches
# force a full collection over the state cache (hundreds of thousands of objects):
# ~20 µs of a ~85 µs purchase, measured. The worker freezes what start-up loaded (modules,
# the model) and collects the young generation only after more allocations than a batch
# makes, by which time the batch's objects are gone.
STREAMING_GC_THRESHOLDS = (50_000, 20, 10)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a detector worker reads of the configuration: the topics it consumes and
    produces (purchases, behaviour, decisions, alerts, dead letters, the rules' control
    topic) and the detector section (its group, micro-batch bounds, input alignment,
    decision bands, challenger, rules, deduplication). The stores, the model and the log
    come built: :func:`~shopsentry.detection.runner.build_worker` wires them."""

    topics: TopicsSettings
    detector: DetectorSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(topics=settings.topics, detector=settings.detector)


@dataclass
class WorkerOptions:
    index: int = 0
    metrics_port: int = 0  # 0: no HTTP endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 where Prometheus runs in another container
    max_events: int | None = None  # stop after this many input records (tests, benchmarks)
    exit_when_idle_s: float | None = None  # stop after this long without records
    latency_samples: Path | None = None  # write raw e2e latencies (seconds, .npy) at exit


@contextmanager
def streaming_gc() -> Iterator[None]:
    """Collect rarely while streaming (see :data:`STREAMING_GC_THRESHOLDS`); restore after."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*STREAMING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def hot_path_config(topics: TopicsSettings, detector: DetectorSettings) -> HotPathConfig:
    """The hot path's topics, size limit, decision bands and challenger split."""
    t, d = topics, detector
    c = d.challenger
    return HotPathConfig(
        purchase_topic=t.purchase_events.name,
        behavior_topic=t.user_behavior.name,
        max_event_bytes=d.max_event_bytes,
        routing=RoutingConfig(
            decisions_topic=t.decisions.name,
            alerts_topic=t.fraud_alerts.name,
            dead_letter_topic=t.dead_letter.name,
            threshold=d.threshold,
            decline_threshold=d.decline_threshold,
            top_features=d.top_features,
        ),
        challenger=ChallengerConfig(mode=c.mode, share=c.share, salt=c.salt),
    )


class DetectorHandler:
    """The hot path on the stream runtime: scores with the model current at each batch,
    keeps the states it wrote cached until a rebalance or a failed batch."""

    def __init__(
        self,
        config: WorkerConfig,
        ops: FeatureOps,
        store: StateStore,
        holder: ModelHolder,
        metrics: WorkerMetrics,
        summary: WorkerSummary,
        challenger: ModelHolder | None = None,
    ) -> None:
        self.store = store
        self.holder = holder
        # The registry's challenger, scored beside the champion (None: mode off).
        self.challenger = challenger
        self.ops = ops
        # Analyst rules and lists, followed from the control topic (set by Worker.run).
        self.rules: RuleSetFollower | None = None
        self.metrics = metrics
        self.summary = summary
        self.cache = StateCache()
        topics = config.topics
        self.behavior_topic = topics.user_behavior.name
        self.behavior_partitions = topics.user_behavior.partitions
        self.owned_behavior: set[int] = set()
        keep = config.detector.recent_event_ids
        self.pipeline = HotPath(
            hot_path_config(topics, config.detector),
            ops,
            cache=self.cache,
            owns_behavior=self.owns_behavior,
            recent=RecentEventIds(topics.purchase_events.name, keep) if keep else None,
        )
        # After a restore: the purchases whose decision is on the log already (set by
        # Worker.run from the restore's ledger, docs/runbook.md).
        self.replayed: ReplayedDecisions | None = None

    def owns_behavior(self, user: str) -> bool:
        partition = partition_for(user.encode(), self.behavior_partitions)
        return partition in self.owned_behavior

    def swap_model(self) -> None:
        """Between batches: adopt a newly loaded champion, if one is ready."""
        swapped = self.holder.swap_if_ready()
        if swapped is not None:
            self.metrics.set_model_version(swapped.version)
            self.summary.model_versions.append(swapped.version)
            if self.rules is not None:  # the same rules against the new model's features
                self.rules.recompile(self.ops.names)
        if self.challenger is not None:
            before = self.challenger.current
            self.challenger.swap_if_ready()
            after = self.challenger.current
            if after is not before:
                self.metrics.set_challenger_version(after.version if after else None)
        if self.rules is not None:
            rules = self.rules.swap_if_ready()
            if rules is not None:
                self.metrics.rule_set_version.set(rules.version)

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        self.cache.clear()  # states of partitions that moved may have changed elsewhere
        self.owned_behavior.update(tp.partition for tp in tps if tp.topic == self.behavior_topic)

    def on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        self.cache.clear()
        for tp in tps:
            if tp.topic == self.behavior_topic:
                self.owned_behavior.discard(tp.partition)

    def process(self, records: Sequence[Record]) -> BatchResult:
        self.swap_model()
        scorer = self.holder.current
        assert scorer is not None
        self.metrics.in_flight.set(len(records))
        # Redeliveries are already removed by the runtime: nothing here is "applied".
        rules = self.rules.current if self.rules is not None else None
        challenger = self.challenger.current if self.challenger is not None else None
        outcome = self.pipeline.process(records, {}, scorer, self.store, rules, challenger)
        outputs = outcome.outputs
        if self.replayed and self.replayed.replays(records):
            outputs = outcome.outputs = self.replayed.filter(outputs)
        return BatchResult(outputs=outputs, changes=outcome.state_changes, detail=outcome)

    def saved(self, result: BatchResult) -> None:
        self.cache.put(result.detail.state_objects)
        self.metrics.in_flight.set(0)
        if self.replayed is not None:
            self.metrics.replayed_decisions_kept.inc(self.replayed.saved())

    def reset(self) -> None:
        self.cache.clear()
        self.metrics.in_flight.set(0)
        if self.replayed is not None:
            self.replayed.reset()


class Worker:
    """A detector worker process's body: load the model, run the stream until stopped.

    ``replay_ledger`` reads the last restore's ledger (the purchases whose decision is on
    the log already, ``backup/replay.py``) when the worker starts; None: no restore to
    honour."""

    def __init__(
        self,
        config: WorkerConfig,
        log: EventLog,
        store: StateStore,
        holder: ModelHolder,
        ops: FeatureOps,
        options: WorkerOptions | None = None,
        metrics: WorkerMetrics | None = None,
        lag_log: Callable[[], EventLog] | None = None,
        challenger: ModelHolder | None = None,
        replay_ledger: Callable[[], Ledger] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.store = store
        self.options = options or WorkerOptions()
        self.metrics = metrics or WorkerMetrics()
        self.summary = WorkerSummary(index=self.options.index)
        self.handler = DetectorHandler(
            config, ops, store, holder, self.metrics, self.summary, challenger
        )
        self.runtime: StreamRuntime | None = None
        self._stop = threading.Event()
        # Consumer lag is read by a background thread on its own log connection
        # (``lag_log`` opens one): on Kafka it is several admin round trips, which must
        # not stall the hot path. None: no lag gauges.
        self._lag_log = lag_log
        self._replay_ledger = replay_ledger

    @property
    def holder(self) -> ModelHolder:
        return self.handler.holder

    @holder.setter
    def holder(self, holder: ModelHolder) -> None:
        self.handler.holder = holder

    @property
    def cache(self) -> StateCache:
        return self.handler.cache

    @property
    def pipeline(self) -> HotPath:
        return self.handler.pipeline

    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group (safe from a signal handler)."""
        self._stop.set()
        if self.runtime is not None:
            self.runtime.request_stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stopping_fn(self) -> bool:
        return self._stop.is_set()

    def runtime_config(self) -> RuntimeConfig:
        d, t, opts = self.config.detector, self.config.topics, self.options
        return RuntimeConfig(
            group_id=d.group_id,
            topics=(t.purchase_events.name, t.user_behavior.name),
            client_id=f"detector-{opts.index}",
            batch_max_records=d.batch_max_records,
            batch_max_wait_ms=d.batch_max_wait_ms,
            idle_poll_s=IDLE_POLL_S,
            max_records=opts.max_events,
            exit_when_idle_s=opts.exit_when_idle_s,
            max_idle_ms=d.align_max_idle_ms,
            max_held_records=d.align_max_held_records,
        )

    def run(self) -> WorkerSummary:
        started = time.monotonic()
        opts = self.options
        if opts.metrics_port:
            self.metrics.serve(opts.metrics_port, opts.metrics_host)
        scorer = self.holder.load_initial(self.stopping_fn)
        if scorer is None:
            return self.summary
        self.metrics.set_model_version(scorer.version)
        self.summary.model_versions.append(scorer.version)
        self.holder.start()
        self._start_challenger()
        self._follow_rules()
        self._load_replay_ledger()
        self._learn_behavior_partitions()
        sampler = LatencySampler(opts.latency_samples) if opts.latency_samples else None
        observers: list[Observer] = [SummaryObserver(self.summary), MetricsObserver(self.metrics)]
        if sampler is not None:
            observers.append(sampler)
        runtime = self.runtime = StreamRuntime(
            self.log,
            self.runtime_config(),
            self.handler,
            StateStoreSink(self.store),
            observers=observers,
            until=self._between_batches,
        )
        if self._stop.is_set():
            runtime.request_stop()
        lag_thread = None
        if self._lag_log is not None:
            lag_thread = threading.Thread(target=self._lag_loop, name="lag", daemon=True)
            lag_thread.start()
        try:
            with streaming_gc():
                runtime.run()
        finally:
            self._stop.set()  # ends the lag thread too
            self.holder.stop()
            if self.handler.challenger is not None:
                self.handler.challenger.stop()
            if self.handler.rules is not None:
                self.handler.rules.stop()
            self.summary.elapsed_s = time.monotonic() - started
            if sampler is not None:
                sampler.write()
            self.handler.pipeline.dead_letter_log.flush()
            logger.info(
                "worker %d done: %d records, %d purchases, %d dead-lettered, %d skipped in %.1fs",
                opts.index,
                self.summary.records,
                self.summary.purchases,
                self.summary.dead_lettered,
                self.summary.skipped,
                self.summary.elapsed_s,
            )
        return self.summary

    def _between_batches(self, runtime: StreamRuntime) -> bool:
        """After an empty poll: adopt a new champion even while no record arrives."""
        self.handler.swap_model()
        return False

    def _start_challenger(self) -> None:
        """Load the challenger, if one is registered, before the first batch; then
        follow its alias (set, moved, cleared) like the champion's."""
        challenger = self.handler.challenger
        if challenger is None:
            return
        challenger.check_once()
        challenger.swap_if_ready()
        current = challenger.current
        self.metrics.set_challenger_version(current.version if current else None)
        if current is not None:
            logger.info(
                "worker %d: challenger %s scores beside the champion (%s)",
                self.options.index, current.version,
                self.config.detector.challenger.mode,
            )  # fmt: skip
        challenger.start()

    def _load_replay_ledger(self) -> None:
        """After a restore: keep the decisions the log already holds (backup/replay.py)."""
        if self._replay_ledger is None:
            return
        from shopsentry.backup.replay import ReplayedDecisions

        ledger = self._replay_ledger()
        if ledger.event_ids:
            t = self.config.topics
            self.handler.replayed = ReplayedDecisions(
                ledger, (t.decisions.name, t.fraud_alerts.name), t.purchase_events.name
            )
            logger.info(
                "worker %d: %d purchases keep the decision already on the log (restore)",
                self.options.index, len(ledger.event_ids),
            )  # fmt: skip

    def _follow_rules(self) -> None:
        """Load the rule set to the control topic's end before the first purchase is
        decided, then follow it (changes apply between batches, within a second)."""
        if not self.config.detector.rules:
            return
        follower = RuleSetFollower(self.log, self.config.topics.rules.name)
        compiled = follower.load_initial(self.handler.ops.names)
        logger.info(
            "worker %d: rule set version %d (%d rules, %d list entries)",
            self.options.index, compiled.version, len(compiled.rules), len(compiled.lists),
        )  # fmt: skip
        follower.start()
        self.handler.rules = follower
        self.metrics.rule_set_version.set(compiled.version)

    def _learn_behavior_partitions(self) -> None:
        """The topic's real partition count decides where a user's behaviour lives."""
        topic = self.handler.behavior_topic
        try:
            info = self.log.describe_topic(topic)
            self.handler.behavior_partitions = (
                len(info.partitions) or self.handler.behavior_partitions
            )
        except Exception:  # an unknown count only disables caching of read-only states
            logger.warning("cannot describe %s; using the configured partition count", topic)

    def _lag_loop(self) -> None:
        assert self._lag_log is not None
        try:
            log = self._lag_log()
        except Exception:  # lag is observability: never let it stop the stream
            logger.warning("consumer lag: cannot open the log; no lag metrics", exc_info=True)
            return
        try:
            while not self._stop.wait(LAG_REFRESH_S):
                # This worker's own lag: end offsets (leader-bound requests) minus what it
                # has applied. Not the group's lag (coordinator-bound admin requests, which
                # librdkafka can abort the process on when a broker dies).
                runtime = self.runtime
                owned = runtime.owned if runtime is not None else frozenset()
                positions = dict(runtime.positions) if runtime is not None else {}
                try:
                    parts = [
                        (TopicPartition(topic, p.partition), p)
                        for topic in sorted({tp.topic for tp in owned})
                        for p in log.describe_topic(topic).partitions
                    ]
                except Exception:
                    logger.debug("consumer lag refresh failed", exc_info=True)
                    continue
                next_of = {tp: positions.get(tp, 0) for tp, _ in parts}
                self.metrics.set_lag(
                    {
                        tp: max(0, p.end_offset - max(p.start_offset, next_of[tp]))
                        for tp, p in parts
                        if tp in owned
                    }
                )
        finally:
            log.close()
