"""The interfaces of the stream runtime: what a consumer of the log plugs into it.

A consumer is three parts (quix-streams' Application/Checkpoint and faust's store with
``persisted_offset`` have the same shape):

* a :class:`Handler` turns a polled batch into outputs and state changes, computing
  only (no producing, no committing);
* a :class:`Sink` keeps the handler's state together with the offsets it reflects (and
  the batch's outputs, the outbox) and writes all three in one atomic, fenced step;
* :class:`Observer`\\ s watch batches and errors (metrics, benchmark latency samples).

The runtime (:mod:`shopsentry.stream.runtime`) owns the loop, the rebalance callbacks,
the error policy and the one ordered commit step (:mod:`shopsentry.stream.checkpoint`).
Offsets here follow Kafka's convention: a *position* is the next offset to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shopsentry.bus.base import Record, TopicPartition


@runtime_checkable
class Output(Protocol):
    """One record to produce (the detector's ``OutRecord`` is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


@dataclass(slots=True)
class BatchResult:
    """What a handler made of one batch: ``outputs`` to produce, ``changes`` for the sink
    (opaque to the runtime), and ``detail`` for observers (e.g. the hot path's outcome)."""

    outputs: Sequence[Output] = ()
    changes: Any = None
    detail: Any = None
    # A handler that stopped part-way (a stop request during a retry wait) says where:
    # the next offset it finished per partition. None: the whole batch is done.
    done: Mapping[TopicPartition, int] | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One atomic write of a sink: the changes, the positions they reach, the positions
    the writer started from (the fence) and the outputs that go with them (the outbox)."""

    changes: Any
    positions: Mapping[TopicPartition, int]
    expected: Mapping[TopicPartition, int]
    outbox_id: str
    outbox: Sequence[Output] = ()


@dataclass(slots=True)
class BatchReport:
    """What observers see after a batch was made durable and committed."""

    records: int  # polled, including redeliveries skipped
    applied: int  # handed to the handler
    skipped_by_topic: dict[str, int]
    result: BatchResult
    durable_ms: int  # wall clock when the outputs were durable
    stages_s: dict[str, float] = field(default_factory=dict)  # "produce", "commit"
    fenced: bool = False


@runtime_checkable
class Handler(Protocol):
    """A consumer's logic. Called from the runtime's thread only."""

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        """Partitions arrived (their sink positions are already read)."""
        ...

    def on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        """Partitions left (their last batch is already committed)."""
        ...

    def process(self, records: Sequence[Record]) -> BatchResult:
        """The outputs and state changes of ``records`` (redeliveries already removed).
        A bad record is the handler's to dead-letter (an output); raising means the batch
        cannot be processed now (``retryable``) or at all."""
        ...

    def saved(self, result: BatchResult) -> None:
        """The batch's changes are durable (e.g. keep them cached)."""
        ...

    def reset(self) -> None:
        """A batch failed or was fenced: forget anything not read from the sink."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Durable state with the positions it reflects: the one place offsets are stored in
    the same transaction as the output."""

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to read per partition (0 where nothing was applied)."""
        ...

    def save(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint atomically. Raise :class:`~shopsentry.errors.StateFenced`
        (writing nothing) if a stored position is beyond ``checkpoint.expected``."""
        ...

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        """The outputs saved with the last checkpoint of each partition (in order, each
        batch once): re-produced verbatim when a partition is assigned after a crash."""
        ...


class Observer(Protocol):
    """Watches the runtime; must be cheap (it runs on the stream's thread)."""

    def on_batch(self, report: BatchReport) -> None: ...

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        """A batch or poll failed; ``retrying``: the runtime backs off and tries again."""
        ...

    def on_recovered(self) -> None:
        """A batch went through after errors."""
        ...


class HandlerBase:
    """No-op defaults for the Handler hooks a consumer does not need."""

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        """Nothing to do when partitions arrive."""

    def on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        """Nothing to do when partitions leave."""

    def saved(self, result: BatchResult) -> None:
        """Nothing kept between batches."""

    def reset(self) -> None:
        """Nothing cached to forget."""


class ObserverBase:
    """No-op defaults for an Observer that watches only some of what happens."""

    def on_batch(self, report: BatchReport) -> None:
        """Batches are not watched."""

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        """Errors are not watched."""

    def on_recovered(self) -> None:
        """Recoveries are not watched."""


def check_fence(
    stored: Mapping[TopicPartition, int], expected: Mapping[TopicPartition, int], where: str
) -> None:
    """Inside a sink's transaction: refuse the write if another writer went past the
    positions this one started from (every sink fences the same way)."""
    from shopsentry.errors import StateFenced

    for tp, start in expected.items():
        if stored.get(tp, 0) > start:
            raise StateFenced(
                f"{tp.topic}[{tp.partition}] is at {stored[tp]} in {where}, beyond this "
                f"writer's {start}: another consumer writes there now",
                hint="the partition moved during the batch; its new owner carries on",
            )
