"""The stream runtime: the one consume loop under every consumer of the log.

poll a batch → drop redeliveries (offsets below the sink's positions) → the handler →
:class:`~shopsentry.stream.checkpoint.Committer` (save state + positions + outbox,
fenced → produce + flush → commit). On assignment each partition is sought to the
sink's position and a crashed owner's outbox is re-produced; revocation finishes a
batch still filling and commits, waiting. One error policy:

* a bad record is the handler's to dead-letter (an output), and the stream goes on;
* a transient error (``retryable``) backs off and retries, for as long as it takes —
  observers hear of it (metrics and health say "degraded"), the runtime never exits;
* any other error stops the runtime: it propagates to the caller, which says it in one
  line.

With several input topics and ``max_idle_ms`` > 0 the polled records pass an
:class:`~shopsentry.stream.align.InputAligner` first: handed on in timestamp order across
the topics, the rest held for a later batch (``docs/stream.md``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shopsentry.bus.base import Consumer, EventLog, Producer, Record, TopicPartition
from shopsentry.errors import is_retryable
from shopsentry.stream.align import InputAligner
from shopsentry.stream.base import BatchReport, BatchResult, Checkpoint, Handler, Observer, Sink
from shopsentry.stream.checkpoint import Backoff, Committer, Stopped, wall_ms

logger = logging.getLogger(__name__)

# --exit-when-idle waits at least this long for a first assignment (joining takes time).
NO_ASSIGNMENT_GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    group_id: str
    topics: tuple[str, ...]
    client_id: str
    batch_max_records: int = 500
    batch_max_wait_ms: int = 20
    # Below a backlog, wait this long (within batch_max_wait_ms) for more records after
    # the first: a trickle then pays one batch's fixed costs (flush, state transaction,
    # commit) per few ms instead of per poll.
    linger_ms: int = 5
    idle_poll_s: float = 0.2  # also bounds how fast a stop request is noticed
    auto_offset_reset: str = "earliest"
    produces: bool = True
    max_records: int | None = None  # stop after this many polled records
    exit_when_idle_s: float | None = None  # stop after this long without records
    backoff: Backoff = field(default_factory=Backoff)
    # Timestamp-synchronised input over several topics (Kafka Streams' max.task.idle.ms):
    # how long a caught-up topic may stay quiet before records of the others are handed
    # on past it. 0: no alignment (each batch as polled).
    max_idle_ms: int = 0
    max_held_records: int = 50_000  # held for alignment at most; past it the oldest go


class StreamRuntime:
    """Runs one handler over one consumer-group member until stopped."""

    def __init__(
        self,
        log: EventLog,
        config: RuntimeConfig,
        handler: Handler,
        sink: Sink,
        *,
        observers: Sequence[Observer] = (),
        until: Callable[[StreamRuntime], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.log = log
        self.config = config
        self.handler = handler
        self.sink = sink
        self.observers = list(observers)
        self.until = until  # checked after every empty poll: e.g. "caught up"
        self.records = 0
        self.degraded = False
        self.positions: dict[TopicPartition, int] = {}
        self.consumer: Consumer | None = None
        self._stop = stop if stop is not None else threading.Event()
        self._buffer: list[Record] = []
        self._committer: Committer | None = None
        self._to_seek: set[TopicPartition] = set()
        self._to_recover: set[TopicPartition] = set()
        self._owned: set[TopicPartition] = set()
        self._ever_assigned = False
        self._last_activity = time.monotonic()
        self._outbox_prefix = uuid.uuid4().hex[:12]
        self._batch_seq = 0
        self.aligner: InputAligner | None = None
        if config.max_idle_ms > 0 and len(set(config.topics)) > 1:
            self.aligner = InputAligner(config.max_idle_ms, config.max_held_records)

    # -- control ---------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def owned(self) -> frozenset[TopicPartition]:
        return frozenset(self._owned)

    def run(self) -> None:
        cfg = self.config
        producer: Producer | None = self.log.producer() if cfg.produces else None
        consumer = self.consumer = self.log.consumer(
            cfg.group_id,
            list(cfg.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            auto_offset_reset=cfg.auto_offset_reset,
            client_id=cfg.client_id,
        )
        self._committer = Committer(
            self.sink, consumer, producer, self._stop, backoff=cfg.backoff, on_retry=self._retrying
        )
        self._last_activity = time.monotonic()
        try:
            self._loop(consumer)
        finally:
            try:
                consumer.close()  # revokes: on_revoke finishes a buffered batch and commits
            finally:
                if producer is not None:
                    producer.close()

    # -- the loop --------------------------------------------------------------------
    def _loop(self, consumer: Consumer) -> None:
        cfg = self.config
        attempt = 0
        batch: list[Record] = []  # kept across retries: its records are polled already
        sought = False
        while not self._stop.is_set():
            try:
                if not batch:
                    polled = self._poll_batch(consumer)
                    batch, sought = self._after_assignment(consumer, polled)
                    if self.aligner is not None:
                        batch = self._aligned(batch, short=len(polled) < self._poll_limit())
                if self._to_recover:
                    self._recover(consumer)
                if sought and not batch:
                    sought = False
                    continue  # the fetch restarts at the sink's positions
                if batch:
                    self._last_activity = time.monotonic()
                    self._run_batch(batch)
                    batch = []
                elif self.aligner is not None and len(self.aligner):
                    pass  # held records wait for the other topics or their idle time
                elif (self.until is not None and self.until(self)) or self._idle_for_too_long():
                    return
                if attempt or self.degraded:  # degraded: the committer retried inside
                    attempt = 0
                    self._recovered()
            except Stopped:
                return
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                attempt += 1
                self._retrying(exc)
                delay = cfg.backoff.delay(attempt)
                logger.warning("%s: %s; retrying in %.1fs", cfg.client_id, exc, delay)
                if self._stop.wait(delay):
                    return
            if cfg.max_records is not None and self.records >= cfg.max_records:
                logger.info("%s reached %d records; stopping", cfg.client_id, cfg.max_records)
                return

    def _poll_batch(self, consumer: Consumer) -> list[Record]:
        """Up to ``batch_max_records``: block for the first, then top up for at most
        ``batch_max_wait_ms``: waiting up to ``linger_ms`` after the first record for
        more, then taking only what is already there. A poll returning fewer than asked
        after the linger means the log had no more at that instant: stop there rather
        than wait for a trickle (latency at moderate load); a backlog still fills whole
        batches without waiting."""
        cfg = self.config
        limit = self._poll_limit()
        first = consumer.poll(max_records=limit, timeout=self._poll_timeout())
        if not first:
            return []
        self._buffer = list(first)
        start = time.monotonic()
        deadline = start + cfg.batch_max_wait_ms / 1000
        linger_until = start + min(cfg.linger_ms, cfg.batch_max_wait_ms) / 1000
        while len(self._buffer) < limit:
            now = time.monotonic()
            if now >= deadline:
                break
            wanted = limit - len(self._buffer)
            more = consumer.poll(max_records=wanted, timeout=max(0.0, linger_until - now))
            self._buffer.extend(more)
            if len(more) < wanted and time.monotonic() >= linger_until:
                break
        batch, self._buffer = self._buffer, []
        return batch

    def _poll_limit(self) -> int:
        cfg = self.config
        limit = cfg.batch_max_records
        if cfg.max_records is not None:
            held = len(self.aligner) if self.aligner is not None else 0
            limit = max(1, min(limit, cfg.max_records - self.records - held))
        return limit

    def _poll_timeout(self) -> float:
        """``idle_poll_s``, or less while held records wait for an idle time to run out."""
        wait = self.aligner.wait_s() if self.aligner is not None else None
        return self.config.idle_poll_s if wait is None else min(wait, self.config.idle_poll_s)

    def _aligned(self, polled: list[Record], *, short: bool) -> list[Record]:
        """The polled records through the aligner: what may be handed on now. Reaching
        ``max_records`` (the runtime stops reading) hands on everything held."""
        aligner = self.aligner
        assert aligner is not None
        aligner.offer(polled, short=short)
        cfg = self.config
        if cfg.max_records is not None and self.records + len(aligner) >= cfg.max_records:
            return aligner.drain()
        return aligner.take(cfg.batch_max_records)

    def _idle_for_too_long(self) -> bool:
        limit = self.config.exit_when_idle_s
        if limit is None:
            return False
        if not self._ever_assigned:
            limit = max(limit, NO_ASSIGNMENT_GRACE_S)
        if time.monotonic() - self._last_activity < limit:
            return False
        logger.info("%s idle for %.1fs; stopping", self.config.client_id, limit)
        return True

    def _run_batch(self, records: list[Record]) -> None:
        """One batch: split off redeliveries, handle, save, produce, commit."""
        committer = self._committer
        assert committer is not None
        positions = self.positions
        fresh: list[Record] = []
        skipped: dict[str, int] = {}
        commit: dict[TopicPartition, int] = {}
        reached: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            commit[tp] = record.offset + 1
            if record.offset < positions.get(tp, 0):
                skipped[record.topic] = skipped.get(record.topic, 0) + 1
                continue
            reached[tp] = record.offset + 1
            fresh.append(record)
        try:
            result = self.handler.process(fresh) if fresh else BatchResult()
            if result.done is not None:
                reached, commit = _partial(result.done, fresh, commit)
            self._batch_seq += 1
            checkpoint = Checkpoint(
                changes=result.changes,
                positions=reached,
                expected={tp: positions.get(tp, 0) for tp in reached},
                outbox_id=f"{self._outbox_prefix}-{self._batch_seq}",
                outbox=result.outputs,
            )
            if not committer.save(checkpoint):
                self._fenced()
                self._report(records, fresh, skipped, result, 0, {}, fenced=True)
                return
        except BaseException:
            self.handler.reset()  # anything cached may be ahead of the sink now
            raise
        positions.update(reached)
        self.handler.saved(result)
        t0 = time.perf_counter()
        committer.produce(result.outputs)
        durable_ms = wall_ms()
        t1 = time.perf_counter()
        committer.commit(commit)
        stages = {"produce": t1 - t0, "commit": time.perf_counter() - t1}
        self._report(records, fresh, skipped, result, durable_ms, stages)

    def _report(
        self,
        records: list[Record],
        fresh: list[Record],
        skipped: dict[str, int],
        result: BatchResult,
        durable_ms: int,
        stages: dict[str, float],
        *,
        fenced: bool = False,
    ) -> None:
        self.records += len(records)
        report = BatchReport(len(records), len(fresh), skipped, result, durable_ms, stages, fenced)
        for observer in self.observers:
            observer.on_batch(report)

    def _fenced(self) -> None:
        """Another member applied records of a partition in this batch: this one lost it
        without being told yet. Nothing was written, produced or committed; re-read the
        positions so what the new owner applied is skipped if it comes back here."""
        self.handler.reset()
        owned = sorted(self._owned | set(self.positions))
        self.positions.update(self.sink.positions(owned))

    def _retrying(self, exc: BaseException) -> None:
        self.degraded = True
        for observer in self.observers:
            observer.on_error(exc, retrying=True)

    def _recovered(self) -> None:
        self.degraded = False
        logger.info("%s: recovered", self.config.client_id)
        for observer in self.observers:
            observer.on_recovered()

    # -- rebalancing -------------------------------------------------------------------
    def _on_assign(self, tps: Sequence[TopicPartition]) -> None:
        """Runs inside poll: read the sink's positions; seeking and outbox recovery wait
        until poll returns (a seek inside the callback is not allowed on every backend)."""
        self._ever_assigned = True
        self._last_activity = time.monotonic()
        self._owned.update(tps)
        if self.aligner is not None:
            self.aligner.assign(tps)
        stored = self.sink.positions(list(tps))
        self.positions.update({tp: stored.get(tp, 0) for tp in tps})
        self._to_seek.update(tp for tp in tps if tp in stored)
        logger.info("%s assigned %s (positions %s)", self.config.client_id, list(tps), stored)
        self.handler.on_assign(tps)

    def _after_assignment(
        self, consumer: Consumer, records: list[Record]
    ) -> tuple[list[Record], bool]:
        """Seek newly assigned partitions to the sink's positions (the sink decides where
        a partition resumes, not the log's committed offset) and drop this poll's records
        of those partitions (they are read again from the position)."""
        tps = sorted(self._to_seek & self._owned)
        self._to_seek.clear()
        if not tps:
            return records, False
        for tp in tps:
            consumer.seek(tp, self.positions[tp])
        self._to_recover.update(tps)
        moved = set(tps)
        return [r for r in records if TopicPartition(r.topic, r.partition) not in moved], True

    def _recover(self, consumer: Consumer) -> None:
        """Re-produce the outbox of partitions a previous owner saved but may not have
        produced (before any new output of theirs); retried like a batch on failure."""
        assert self._committer is not None
        tps = sorted(self._to_recover & self._owned)
        if tps:
            committed = {tp: off or 0 for tp, off in consumer.committed(tps).items()}
            self._committer.recover({tp: self.positions[tp] for tp in tps}, committed)
        self._to_recover.clear()

    def _on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        if self.aligner is not None:
            # Records polled for a batch still filling wait in the aligner like the rest;
            # those of the revoked partitions are dropped (their commits stop before them).
            buffered, self._buffer = self._buffer, []
            self.aligner.offer(buffered, short=False)
            self.aligner.revoke(tps)
        if self._buffer:
            # Records polled for a batch still filling: finish them while this member
            # still owns their partitions.
            buffered, self._buffer = self._buffer, []
            self._run_batch(buffered)
        if self._committer is not None:
            self._committer.confirm(tps)
        self.handler.on_revoke(tps)
        for tp in tps:
            self.positions.pop(tp, None)
            self._owned.discard(tp)
            self._to_seek.discard(tp)
            self._to_recover.discard(tp)
        logger.info("%s revoked %s", self.config.client_id, list(tps))


def _partial(
    done: Mapping[TopicPartition, int],
    fresh: Sequence[Record],
    commit: dict[TopicPartition, int],
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Positions and commits of a batch the handler finished only up to ``done``: a
    partition's commit stops at its first record the handler did not finish."""
    first_fresh: dict[TopicPartition, int] = {}
    for record in fresh:
        first_fresh.setdefault(TopicPartition(record.topic, record.partition), record.offset)
    reached = {tp: off for tp, off in done.items() if off > first_fresh.get(tp, off)}
    limited = {}
    for tp, offset in commit.items():
        limit = done.get(tp, first_fresh.get(tp, offset))
        if limit > 0 or tp in done:
            limited[tp] = min(offset, limit)
    return reached, limited
