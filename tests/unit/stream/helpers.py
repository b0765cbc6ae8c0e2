"""A counting handler and an in-memory sink for the runtime's own tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.errors import StateFenced
from shopsentry.stream.base import BatchReport, BatchResult, Checkpoint, Output
from shopsentry.stream.outbox import Outgoing, decode_outbox, encode_outbox


class EchoHandler:
    """Outputs each record's value upper-cased to "out"; its state is the values seen."""

    def __init__(self, fail: list[BaseException] | None = None) -> None:
        self.fail = fail or []
        self.processed: list[bytes] = []
        self.resets = 0
        self.assigned: list[TopicPartition] = []

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        self.assigned += tps

    def on_revoke(self, tps: Sequence[TopicPartition]) -> None:
        pass

    def process(self, records: Sequence[Record]) -> BatchResult:
        if self.fail:
            raise self.fail.pop(0)
        self.processed += [r.value for r in records]
        outputs = [Outgoing("out", r.key, r.value.upper()) for r in records]
        return BatchResult(outputs=outputs, changes=[r.value for r in records])

    def saved(self, result: BatchResult) -> None:
        pass

    def reset(self) -> None:
        self.resets += 1


@dataclass
class MemorySink:
    stored: dict[TopicPartition, int] = field(default_factory=dict)
    state: list[bytes] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    points: dict[TopicPartition, str] = field(default_factory=dict)
    saves: int = 0
    fail: list[BaseException] = field(default_factory=list)

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.stored[tp] for tp in tps if tp in self.stored}

    def save(self, checkpoint: Checkpoint) -> None:
        if self.fail:
            raise self.fail.pop(0)
        for tp, start in checkpoint.expected.items():
            if self.stored.get(tp, 0) > start:
                raise StateFenced(f"{tp} moved")
        self.saves += 1
        self.state += checkpoint.changes or []
        self.stored.update(checkpoint.positions)
        if checkpoint.outbox:
            self.blobs[checkpoint.outbox_id] = encode_outbox(checkpoint.outbox)
            for tp in checkpoint.positions:
                self.points[tp] = checkpoint.outbox_id

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        ids = sorted({self.points[tp] for tp in tps if tp in self.points})
        return [o for i in ids for o in decode_outbox(self.blobs[i])]


@dataclass
class Recorder:
    reports: list[BatchReport] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    recovered: int = 0

    def on_batch(self, report: BatchReport) -> None:
        self.reports.append(report)

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        self.errors.append(error)

    def on_recovered(self) -> None:
        self.recovered += 1
