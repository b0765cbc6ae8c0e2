"""The one ordered commit step every consumer of the log goes through.

1. **Save** the batch's state changes, the positions they reach and the batch's outputs
   (the outbox) in one atomic write of the sink, fenced: refused, writing nothing, if
   another member applied beyond the positions this one started from.
2. **Produce** the outputs and flush (returns = durable). A transient failure is retried
   with backoff, the same bytes each time: the state is already saved, so the batch is
   never computed again.
3. **Commit** the consumer offsets: without waiting between batches, waiting when
   partitions are revoked. A lost commit only costs a redelivery, which the sink's
   positions turn into a no-op.

A crash before 1 leaves nothing behind (the batch runs again from the old state and its
outputs were never produced). A crash after 1 leaves the outbox: whoever is assigned the
partition next sees the consumer's committed offset behind the sink's position and
re-produces the saved bytes before anything else (:meth:`Committer.recover`). So every
output that ever reaches a topic is the one the first run produced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shopsentry.bus.base import Consumer, Producer, TopicPartition
from shopsentry.errors import CommitFailed, StateFenced, is_retryable
from shopsentry.stream.base import Checkpoint, Output, Sink

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential waits between retries of a transient failure."""

    initial_s: float = 0.2
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1)))


class Stopped(Exception):
    """A stop was requested while a step waited to retry (internal to the runtime)."""


class Committer:
    """Save → produce + flush → commit, for one consumer and its sink."""

    def __init__(
        self,
        sink: Sink,
        consumer: Consumer,
        producer: Producer | None,
        stop: threading.Event,
        *,
        backoff: Backoff,
        on_retry: object = None,
    ) -> None:
        self.sink = sink
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        self.backoff = backoff
        self.on_retry = on_retry
        # Offsets committed without waiting: committed again, waiting, on revocation.
        self.unconfirmed: dict[TopicPartition, int] = {}

    def save(self, checkpoint: Checkpoint) -> bool:
        """Step 1. False: fenced out (nothing written; another member owns a partition)."""
        if not checkpoint.positions and not checkpoint.outbox:
            return True
        try:
            self.sink.save(checkpoint)
        except StateFenced as exc:
            logger.warning("state save fenced out: %s", exc.one_line())
            return False
        return True

    def produce(self, outputs: Sequence[Output]) -> None:
        """Step 2, retried until durable (or a stop is requested: then :class:`Stopped`)."""
        if not outputs:
            return
        if self.producer is None:
            raise RuntimeError("this consumer produces nothing, but its handler returned outputs")
        attempt = 0
        while True:
            try:
                send = self.producer.send
                for out in outputs:
                    send(out.topic, out.value, out.key, headers=out.headers)
                self.producer.flush()
                return
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                attempt += 1
                self._wait_to_retry(exc, attempt, "producing the batch's outputs")

    def commit(self, offsets: Mapping[TopicPartition, int], *, wait: bool = False) -> None:
        """Step 3. A refused commit is logged: the sink's positions already cover it."""
        if not offsets:
            return
        try:
            self.consumer.commit(dict(offsets), asynchronous=not wait)
        except CommitFailed as exc:
            logger.warning("offset commit refused (%s); the sink's positions cover it", exc)
            return
        if wait:
            for tp in offsets:
                self.unconfirmed.pop(tp, None)
        else:
            self.unconfirmed.update(offsets)

    def confirm(self, tps: Sequence[TopicPartition]) -> None:
        """Commit, waiting, what was committed without waiting for ``tps`` (on revoke)."""
        final = {tp: self.unconfirmed.pop(tp) for tp in tps if tp in self.unconfirmed}
        if not final:
            return
        try:
            self.consumer.commit(final)
        except Exception as exc:  # best effort: the sink's positions cover it
            logger.info("final commit on revocation failed (%s)", exc)

    def recover(
        self, positions: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]
    ) -> int:
        """Re-produce the outbox of partitions whose committed offset is behind the sink's
        position (the last owner saved a batch and may not have produced it); returns
        how many records were re-produced."""
        behind = [tp for tp, pos in positions.items() if committed.get(tp, 0) < pos]
        if not behind:
            return 0
        outputs = self.sink.outbox(behind)
        if outputs:
            logger.info(
                "re-producing %d saved output(s) of %s (a previous owner stopped mid-batch)",
                len(outputs),
                behind,
            )
            self.produce(outputs)
        self.commit({tp: positions[tp] for tp in behind}, wait=True)
        return len(outputs)

    def _wait_to_retry(self, exc: BaseException, attempt: int, what: str) -> None:
        delay = self.backoff.delay(attempt)
        logger.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
        if callable(self.on_retry):
            self.on_retry(exc)
        if self.stop.wait(delay):
            raise Stopped from exc


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
