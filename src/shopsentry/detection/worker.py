"""One detector worker: a consumer-group member running the hot path batch after batch.

The order of the I/O per micro-batch is what makes the effects exactly-once:

1. produce decisions / alerts / dead letters, then ``flush`` (returns = durable);
2. save the changed user states **together with** the highest offset applied per input
   partition, atomically — fenced: refused if another worker has applied beyond the
   offsets this one started from (it lost the partitions without noticing);
3. commit the consumer offsets, without waiting (waiting when partitions are revoked).

A crash before 1 completes re-runs the batch from the old state: same features, same
decision ids. A crash between 1 and 2 re-emits the same decisions (same ``event_id``;
readers deduplicate on it) — the only window in which a duplicate can appear, besides a
fenced batch. A crash between 2 and 3, or a lost commit, redelivers records whose offsets
the state already holds: they are skipped entirely (no feature update, no output), so no
feature ever counts an event twice. Consumer offsets are committed only once the outputs
are durable.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shopsentry.bus.base import Consumer, EventLog, Producer, Record, TopicPartition
from shopsentry.bus.partitioner import partition_for
from shopsentry.config import Settings
from shopsentry.detection.hot_path import (
    BatchOutcome,
    FeatureOps,
    HotPath,
    HotPathConfig,
    StateCache,
)
from shopsentry.detection.metrics import WorkerMetrics
from shopsentry.detection.model_reload import ModelHolder, ScoringModel
from shopsentry.detection.routing import RoutingConfig
from shopsentry.errors import CommitFailed, StateFenced
from shopsentry.features.state_store import NOTHING_APPLIED, StateStore

logger = logging.getLogger(__name__)

# How long one idle poll may block: bounds how fast a stop request is noticed.
IDLE_POLL_S = 0.2
LAG_REFRESH_S = 5.0
# --exit-when-idle waits at least this long for a first assignment.
NO_ASSIGNMENT_GRACE_S = 30.0
# Raw end-to-end samples kept for benchmarks (float32, 4 bytes each).
MAX_LATENCY_SAMPLES = 5_000_000
# Cyclic GC while streaming: a batch allocates thousands of short-lived containers (records,
# events, rows) that die by reference counting. At CPython's default threshold (700) they
# set off collections mid-batch, get promoted while still alive, and every few batches
# force a full collection over the state cache (hundreds of thousands of objects):
# ~20 µs of a ~85 µs purchase, measured. The worker freezes what start-up loaded (modules,
# the model) and collects the young generation only after more allocations than a batch
# makes, by which time the batch's objects are gone.
STREAMING_GC_THRESHOLDS = (50_000, 20, 10)


@dataclass
class WorkerOptions:
    index: int = 0
    metrics_port: int = 0  # 0: no HTTP endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 where Prometheus runs in another container
    max_events: int | None = None  # stop after this many input records (tests, benchmarks)
    exit_when_idle_s: float | None = None  # stop after this long without records
    latency_samples: Path | None = None  # write raw e2e latencies (seconds, .npy) at exit


@dataclass
class WorkerSummary:
    index: int
    records: int = 0
    purchases: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    fenced: int = 0  # batches whose state save another worker's newer state refused
    batches: int = 0
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


def hot_path_config(settings: Settings) -> HotPathConfig:
    t, d = settings.topics, settings.detector
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
    )


class Worker:
    """Consume → hot path → durable outputs → state → commit, until stopped."""

    def __init__(
        self,
        settings: Settings,
        log: EventLog,
        store: StateStore,
        holder: ModelHolder,
        ops: FeatureOps,
        options: WorkerOptions | None = None,
        metrics: WorkerMetrics | None = None,
        lag_log: Callable[[], EventLog] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.store = store
        self.holder = holder
        self.options = options or WorkerOptions()
        self.metrics = metrics or WorkerMetrics()
        self.cache = StateCache()
        self._behavior_topic = settings.topics.user_behavior.name
        self._behavior_partitions = settings.topics.user_behavior.partitions
        self._owned_behavior: set[int] = set()
        self.pipeline = HotPath(
            hot_path_config(settings), ops, cache=self.cache, owns_behavior=self._owns_behavior
        )
        self.summary = WorkerSummary(index=self.options.index)
        self._stop = threading.Event()
        self._applied: dict[TopicPartition, int] = {}
        # Offsets committed without waiting (per partition): committed again, waiting,
        # when the partition is revoked.
        self._committed_async: dict[TopicPartition, int] = {}
        self._buffer: list[Record] = []
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._latencies: list[np.ndarray] = []
        self._latency_count = 0
        # Consumer lag is read by a background thread on its own log connection
        # (``lag_log`` opens one): on Kafka it is several admin round trips, which must
        # not stall the hot path. None: no lag gauges.
        self._lag_log = lag_log
        self._lag_thread: threading.Thread | None = None
        self._owned: frozenset[TopicPartition] = frozenset()
        self._first_cpu = 0.0
        # Idle time counts from the last records or the last assignment (joining a Kafka
        # group takes seconds; a worker must not give up before it owns anything).
        self._last_activity = time.monotonic()
        self._ever_assigned = False

    # -- control ---------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- rebalance callbacks (run inside poll) ------------------------------------------
    def _on_assign(self, tps: Sequence[TopicPartition]) -> None:
        self._last_activity = time.monotonic()
        self._ever_assigned = True
        self._owned = self._owned | frozenset(tps)
        self.cache.clear()  # states of partitions that moved may have changed elsewhere
        self._owned_behavior.update(tp.partition for tp in tps if tp.topic == self._behavior_topic)
        applied = self.store.applied_offsets(list(tps))
        self._applied.update(applied)
        logger.info(
            "worker %d assigned %s (applied offsets %s)", self.options.index, list(tps), applied
        )

    def _on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        if self._buffer:
            # Records polled for a batch that was still filling: finish them now, while
            # this member still owns their partitions.
            buffered, self._buffer = self._buffer, []
            self._run_batch(buffered)
        final = {tp: self._committed_async.pop(tp) for tp in tps if tp in self._committed_async}
        if final and self._consumer is not None:
            try:  # hand the partitions over with their offsets acknowledged
                self._consumer.commit(final)
            except Exception as exc:  # best effort: the state's applied offsets cover it
                logger.info("worker %d: final commit failed (%s)", self.options.index, exc)
        self.cache.clear()
        self._owned = self._owned - frozenset(tps)
        for tp in tps:
            self._applied.pop(tp, None)
            if tp.topic == self._behavior_topic:
                self._owned_behavior.discard(tp.partition)
        logger.info("worker %d revoked %s", self.options.index, list(tps))

    # -- main loop -------------------------------------------------------------------
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
        topics = self.settings.topics
        try:  # the topic's real partition count decides where a user's behaviour lives
            info = self.log.describe_topic(self._behavior_topic)
            self._behavior_partitions = len(info.partitions) or self._behavior_partitions
        except Exception:  # an unknown count only disables caching of read-only states
            logger.warning(
                "cannot describe %s; using the configured partition count", self._behavior_topic
            )
        self._producer = self.log.producer()
        self._consumer = self.log.consumer(
            self.settings.detector.group_id,
            [topics.purchase_events.name, topics.user_behavior.name],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            client_id=f"detector-{opts.index}",
        )
        self._last_activity = time.monotonic()
        if self._lag_log is not None:
            self._lag_thread = threading.Thread(target=self._lag_loop, name="lag", daemon=True)
            self._lag_thread.start()
        try:
            with streaming_gc():
                self._loop()
        finally:
            self.summary.elapsed_s = time.monotonic() - started
            self._close()
        return self.summary

    def _loop(self) -> None:
        opts = self.options
        while not self._stop.is_set():
            swapped = self.holder.swap_if_ready()
            if swapped is not None:
                self.metrics.set_model_version(swapped.version)
                self.summary.model_versions.append(swapped.version)
            assert self._consumer is not None
            records = self._poll_batch(self._consumer)
            now = time.monotonic()
            if not records:
                if self._idle_for_too_long(now):
                    logger.info(
                        "worker %d idle for %.1fs; stopping", opts.index, opts.exit_when_idle_s
                    )
                    break
                continue
            self._last_activity = now
            self._run_batch(records)
            if opts.max_events is not None and self.summary.records >= opts.max_events:
                logger.info(
                    "worker %d reached --max-events %d; stopping", opts.index, opts.max_events
                )
                break

    def _idle_for_too_long(self, now: float) -> bool:
        limit = self.options.exit_when_idle_s
        if limit is None:
            return False
        if not self._ever_assigned:
            limit = max(limit, NO_ASSIGNMENT_GRACE_S)  # still joining the group
        return now - self._last_activity >= limit

    def _owns_behavior(self, user: str) -> bool:
        partition = partition_for(user.encode(), self._behavior_partitions)
        return partition in self._owned_behavior

    def stopping_fn(self) -> bool:
        return self._stop.is_set()

    def _poll_batch(self, consumer: Consumer) -> list[Record]:
        """Up to ``batch_max_records`` records: block for the first, then top up with what
        is already there, for at most ``batch_max_wait_ms``. A poll that returns fewer
        records than asked means the log had no more at that instant: stop there rather
        than wait for a trickle (latency at moderate load), while a backlog still fills
        whole batches (throughput at saturation)."""
        d = self.settings.detector
        # Both consumers return as soon as records are there (the poll contract waits only
        # for the first), so one call covers "take what is there" and "idle wait".
        first = consumer.poll(max_records=d.batch_max_records, timeout=IDLE_POLL_S)
        if not first:
            return []
        self._buffer = list(first)
        deadline = time.monotonic() + d.batch_max_wait_ms / 1000
        while len(self._buffer) < d.batch_max_records and time.monotonic() < deadline:
            wanted = d.batch_max_records - len(self._buffer)
            more = consumer.poll(max_records=wanted, timeout=0)
            self._buffer.extend(more)
            if len(more) < wanted:
                break
        batch, self._buffer = self._buffer, []
        return batch

    def _run_batch(self, records: list[Record]) -> None:
        """One micro-batch, end to end, in the order that makes effects exactly-once."""
        m = self.metrics
        if not self.summary.first_batch_wall:
            self.summary.first_batch_wall = time.time()
            self._first_cpu = time.process_time()
        m.in_flight.set(len(records))
        scorer: ScoringModel | None = self.holder.current
        assert scorer is not None and self._producer is not None and self._consumer is not None
        fenced = False
        try:
            outcome = self.pipeline.process(records, self._applied, scorer, self.store)
            t0 = time.perf_counter()
            producer = self._producer
            for out in outcome.outputs:
                producer.send(out.topic, out.value, out.key, headers=out.headers)
            if outcome.outputs:
                producer.flush()
            durable_ms = time.time_ns() // 1_000_000
            t1 = time.perf_counter()
            if outcome.state_changes or outcome.applied:
                expected = {tp: self._applied.get(tp, NOTHING_APPLIED) for tp in outcome.applied}
                try:
                    self.store.save(outcome.state_changes, outcome.applied, expected=expected)
                    self._applied.update(outcome.applied)
                except StateFenced as exc:
                    fenced = True
                    self._fenced(exc)
        except BaseException:
            self.cache.clear()  # cached states may be ahead of the store now
            raise
        if not fenced:
            self._keep_and_commit(outcome)
        t2 = time.perf_counter()
        outcome.stages_s["produce"] = t1 - t0
        outcome.stages_s["commit"] = t2 - t1
        self._record(outcome, durable_ms, len(records))
        m.in_flight.set(0)
        self.summary.last_batch_wall = time.time()
        self.summary.busy_cpu_s = time.process_time() - self._first_cpu

    def _keep_and_commit(self, outcome: BatchOutcome) -> None:
        """The batch's state is saved: cache it, and commit its offsets."""
        assert self._consumer is not None
        self.cache.put(outcome.state_objects)
        try:
            # Without waiting: the state's applied offsets already make a redelivery of
            # these records a no-op, so a lost commit costs a re-read, never a duplicate.
            # (On Kafka a waited-for commit is a coordinator round trip: ~9 ms a batch.)
            self._consumer.commit(outcome.commit, asynchronous=True)
            self._committed_async.update(outcome.commit)
        except CommitFailed as exc:
            # The state already holds the applied offsets: the new owner skips these records.
            logger.warning(
                "worker %d: commit refused (%s); the state's offsets cover it",
                self.options.index,
                exc,
            )

    def _fenced(self, exc: StateFenced) -> None:
        """Another worker applied records of a partition in this batch: this one lost it
        without being told yet (e.g. stalled past the session timeout). Nothing of the
        batch's state was written and nothing is committed; the new owner's state is the
        truth. Re-read the applied offsets so a record already applied elsewhere is skipped
        if it comes back here. The batch's decisions may duplicate the new owner's (same
        event ids: readers deduplicate them)."""
        logger.warning("worker %d: state save fenced out: %s", self.options.index, exc)
        self.cache.clear()
        self.summary.fenced += 1
        owned = sorted(self._owned | frozenset(self._applied))
        self._applied.update(self.store.applied_offsets(owned))

    def _record(self, outcome: BatchOutcome, durable_ms: int, n_records: int) -> None:
        m = self.metrics
        s = self.summary
        s.batches += 1
        s.records += n_records
        s.purchases += outcome.purchases
        for topic, n in outcome.events_by_topic.items():
            m.events_processed.labels(topic).inc(n)
        for topic, n in outcome.skipped_by_topic.items():
            m.redelivered.labels(topic).inc(n)
            s.skipped += n
        for band, n in outcome.bands.items():
            m.decisions.labels(band).inc(n)
        for severity, n in outcome.severities.items():
            m.alerts.labels(severity).inc(n)
        for stage, n in outcome.dead_letters.items():
            m.dead_letter.labels(stage).inc(n)
            s.dead_lettered += n
        for stage, seconds in outcome.stages_s.items():
            m.stage[stage].observe(seconds)
        if outcome.prediction_s is not None:
            m.prediction.observe(outcome.prediction_s)
        if outcome.timestamps_ms:
            e2e = (durable_ms - np.asarray(outcome.timestamps_ms, dtype=np.int64)) / 1000.0
            m.e2e.observe_many(e2e)
            if (
                self.options.latency_samples is not None
                and self._latency_count < MAX_LATENCY_SAMPLES
            ):
                self._latencies.append(e2e.astype(np.float32))
                self._latency_count += e2e.size

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
                owned, applied = self._owned, dict(self._applied)
                try:
                    parts = [
                        (TopicPartition(topic, p.partition), p)
                        for topic in sorted({tp.topic for tp in owned})
                        for p in log.describe_topic(topic).partitions
                    ]
                except Exception:
                    logger.debug("consumer lag refresh failed", exc_info=True)
                    continue
                next_of = {tp: applied.get(tp, NOTHING_APPLIED) + 1 for tp, _ in parts}
                self.metrics.set_lag(
                    {
                        tp: max(0, p.end_offset - max(p.start_offset, next_of[tp]))
                        for tp, p in parts
                        if tp in owned
                    }
                )
        finally:
            log.close()

    def _close(self) -> None:
        self._stop.set()  # ends the lag thread too
        self.holder.stop()
        if self._consumer is not None:
            try:
                self._consumer.close()  # revokes (on_revoke finishes any buffered batch)
            except Exception:
                logger.exception("worker %d: closing the consumer failed", self.options.index)
        if self._producer is not None:
            self._producer.close()
        if self.options.latency_samples is not None:
            samples = (
                np.concatenate(self._latencies)
                if self._latencies
                else np.zeros(0, dtype=np.float32)
            )
            self.options.latency_samples.parent.mkdir(parents=True, exist_ok=True)
            np.save(self.options.latency_samples, samples)
        logger.info(
            "worker %d done: %d records, %d purchases, %d dead-lettered, %d skipped in %.1fs",
            self.options.index,
            self.summary.records,
            self.summary.purchases,
            self.summary.dead_lettered,
            self.summary.skipped,
            self.summary.elapsed_s,
        )
