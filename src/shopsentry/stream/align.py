"""Timestamp-synchronised input: records of several topics handed on in time order.

A consumer of two topics (the detector: purchases and behaviour) reads whatever each
fetch returns. Over a backlog (a restart, a restore, a history written at once) one
topic can be read hours ahead of the other, across many batches, and sorting each
batch by time cannot help: a purchase would be decided before the login that shows its
device was even read. Kafka Streams solves this for a task's input partitions with
``max.task.idle.ms`` (take the record with the lowest timestamp among the partitions'
buffered heads; wait up to that long for a partition with nothing buffered before
processing past it). :class:`InputAligner` does the same between the poll and the
handler, on the log's record timestamps (Kafka: the producer's create time), never on a
decode of the payload:

* a record of topic T at time t is handed on once every assigned partition has been
  read past t, or is *caught up* (a poll returned short, nothing more there) — for a
  partition of another topic, caught up for at least ``max_idle_ms`` (its producer may
  lag a little behind T's);
* records are handed on in timestamp order, each partition's in offset order, and
  records with equal timestamps together (one batch, where the handler orders them by
  event time): what is handed on is everything read below some time;
* the rest is held, at most ``max_held`` records; past that the oldest are handed on
  regardless (bounded memory beats order; a warning says so).

Held records are not in any batch, so a partition's saved position and commit stop at
its first held record: a crash redelivers them.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from shopsentry.bus.base import Record, TopicPartition

logger = logging.getLogger(__name__)

_NEVER = -(2**63)  # read_to of a partition nothing was read from yet
_ANY = 2**63  # the bound of a partition that holds nothing back
# A group of equal timestamps goes in one batch (the handler orders it by event time; the
# log's milliseconds tie often when a backlog is written at once), up to this many
# batches' worth: past it, it is split (timestamps that barely move are a broken clock).
TIE_GROUP_MAX_BATCHES = 10


class InputAligner:
    """Holds polled records until every input partition has been read past them."""

    def __init__(
        self,
        max_idle_ms: int,
        max_held: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_idle_s = max_idle_ms / 1000
        self.max_held = max_held
        self.clock = clock
        self.forced = 0  # records handed on out of order because of max_held
        self._held: dict[TopicPartition, deque[Record]] = {}
        self._read_to: dict[TopicPartition, int] = {}
        self._quiet_since: dict[TopicPartition, float] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    # -- partitions ------------------------------------------------------------------
    def assign(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._held.setdefault(tp, deque())
            self._read_to.setdefault(tp, _NEVER)

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Forget the partitions and their held records (not committed: their next
        owner reads them again)."""
        for tp in tps:
            self._count -= len(self._held.pop(tp, ()))
            self._read_to.pop(tp, None)
            self._quiet_since.pop(tp, None)

    # -- records ---------------------------------------------------------------------
    def offer(self, records: Sequence[Record], *, short: bool) -> None:
        """Hold a poll's records. ``short``: the poll returned fewer than asked, so every
        partition is caught up at this instant (those that delivered, from now on)."""
        now = self.clock()
        held, read_to, quiet = self._held, self._read_to, self._quiet_since
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            queue = held.get(tp)
            if queue is None:  # a partition the callbacks did not announce (no group)
                self.assign((tp,))
                queue = held[tp]
            queue.append(record)
            if record.timestamp_ms > read_to[tp]:
                read_to[tp] = record.timestamp_ms
            if short:
                quiet[tp] = now
            else:
                quiet.pop(tp, None)
        self._count += len(records)
        if short:
            for tp in held:
                quiet.setdefault(tp, now)

    def take(self, limit: int) -> list[Record]:
        """Up to ``limit`` records that may be handed on now, in timestamp order (more
        to finish a group of equal timestamps, see :data:`TIE_GROUP_MAX_BATCHES`)."""
        bounds = self._bounds()
        out = self._merge(limit, lambda r: r.timestamp_ms < bounds[r.topic])
        excess = self._count - self.max_held
        if excess > 0:
            forced = self._merge(excess, lambda r: True)
            if not self.forced:
                logger.warning(
                    "input alignment: more than %d records held; handing the oldest on "
                    "out of order (raise max_held or give the lagging topic more fetch)",
                    self.max_held,
                )
            self.forced += len(forced)
            out = list(heapq.merge(out, forced, key=_timestamp))
        return out

    def held_from(self) -> dict[TopicPartition, int]:
        """The offset of each partition's first held record (its commit stops there)."""
        return {tp: q[0].offset for tp, q in self._held.items() if q}

    def drain(self) -> list[Record]:
        """Every held record, in timestamp order (the runtime stops reading here)."""
        return self._merge(self._count, lambda r: True)

    def wait_s(self) -> float | None:
        """How long until a held record may be handed on: 0 when one may go now (the
        runtime must not block in a poll then), else until a caught-up partition's idle
        time runs out (None: nothing held, or waiting for records, not for time)."""
        if not self._count:
            return None
        now = self.clock()  # one instant for both checks: an idle time ending between
        if self._count > self.max_held or self._any_may_go(now):  # them is not lost
            return 0.0
        pending = [
            since + self.max_idle_s - now
            for since in self._quiet_since.values()
            if now - since < self.max_idle_s
        ]
        return max(0.0, min(pending)) if pending else None

    # -- internals -------------------------------------------------------------------
    def _any_may_go(self, now: float) -> bool:
        bounds = self._bounds(now)
        return any(q and q[0].timestamp_ms < bounds[tp.topic] for tp, q in self._held.items())

    def _bounds(self, now: float | None = None) -> dict[str, int]:
        """Per topic: records below this time are read on every partition that holds
        them back (a caught-up partition does not; of another topic, once idle)."""
        if now is None:
            now = self.clock()
        topics = {tp.topic for tp in self._held}
        bounds = dict.fromkeys(topics, _ANY)
        for tp, read_to in self._read_to.items():
            since = self._quiet_since.get(tp)
            for topic in topics:
                if since is not None and (topic == tp.topic or now - since >= self.max_idle_s):
                    continue
                if read_to < bounds[topic]:
                    bounds[topic] = read_to
        return bounds

    def _merge(self, limit: int, may_go: Callable[[Record], bool]) -> list[Record]:
        """Pop heads in timestamp order while ``may_go``, up to ``limit`` and the end of
        its timestamp group; when a record may not go, the records of its timestamp taken
        so far go back with it."""
        heads = [(q[0].timestamp_ms, i, tp) for i, (tp, q) in enumerate(self._held.items()) if q]
        heapq.heapify(heads)
        out: list[Record] = []
        stopped_at: int | None = None
        while heads:
            ts, i, tp = heads[0]
            if len(out) >= limit and (
                ts != out[-1].timestamp_ms or len(out) >= limit * TIE_GROUP_MAX_BATCHES
            ):
                break
            queue = self._held[tp]
            record = queue[0]
            if not may_go(record):
                stopped_at = ts
                break
            out.append(queue.popleft())
            if queue:
                heapq.heapreplace(heads, (queue[0].timestamp_ms, i, tp))
            else:
                heapq.heappop(heads)
        if stopped_at is not None:
            while out and out[-1].timestamp_ms == stopped_at:
                record = out.pop()
                self._held[TopicPartition(record.topic, record.partition)].appendleft(record)
        self._count -= len(out)
        return out


def _timestamp(record: Record) -> int:
    return record.timestamp_ms
