"""The warehouse loader on the stream runtime: DuckDB is the sink, the handler decides
when the run is over (:func:`shopsentry.warehouse.loader.load_from_log` drives them)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.errors import TransientError
from shopsentry.stream.base import (
    BatchReport,
    BatchResult,
    Checkpoint,
    HandlerBase,
    ObserverBase,
    Output,
)

if TYPE_CHECKING:
    import duckdb

    from shopsentry.stream.runtime import StreamRuntime
    from shopsentry.warehouse.loader import LoadResult

logger = logging.getLogger(__name__)

# How long the loader waits for its group to assign it partitions before giving up.
ASSIGNMENT_TIMEOUT_S = 60.0

# Called with (records loaded so far, records expected in this run or None) as work proceeds.
ProgressCallback = Callable[[int, int | None], None]


# :func:`shopsentry.warehouse.loader.load_records`: rows + offsets in one transaction.
LoadRecords = Callable[..., dict[str, int]]


class LoaderNotAssigned(TransientError):
    """The loader's consumer group gave it no partition (another loader holds them?)."""

    def __init__(self, group: str, waited_s: float) -> None:
        super().__init__(
            f"consumer group {group!r} assigned no partition to the loader within {waited_s:.0f}s",
            hint="only one warehouse loader may run at a time; check `shopsentry topics lag`",
        )
        self.group = group


class WarehouseSink:
    """DuckDB as the stream runtime's sink: RAW rows and ``raw._load_offsets`` in one
    transaction. Its positions are where every partition resumes, also for a fresh
    warehouse (the partition's start), whatever the group committed."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        group: str,
        table_for_topic: dict[str, str],
        position: dict[TopicPartition, int],
        result: LoadResult,
        load: LoadRecords,
    ) -> None:
        self.con = con
        self.group = group
        self.table_for_topic = table_for_topic
        self.position = position  # updated as batches land: what the load reached
        self.result = result
        self.load = load

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.position.get(tp, 0) for tp in tps}

    def save(self, checkpoint: Checkpoint) -> None:
        records: Sequence[Record] = checkpoint.changes or ()
        inserted = self.load(
            self.con,
            records,
            self.table_for_topic,
            group=self.group,
            offsets=dict(checkpoint.positions),
            expected=checkpoint.expected,
        )
        self.position.update(checkpoint.positions)
        self.result.records_read += len(records)
        self.result.add(inserted)

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        return []  # the loader produces nothing


class LoaderHandler(HandlerBase):
    """The batch is the change; :meth:`caught_up` ends the run (the runtime's ``until``)."""

    def __init__(
        self,
        group: str,
        ends: dict[TopicPartition, int],
        position: dict[TopicPartition, int],
        *,
        idle_timeout_s: float,
    ) -> None:
        self.group = group
        self.ends = ends
        self.position = position
        self.idle_timeout_s = idle_timeout_s
        self.assign_deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
        self.last_record_at = time.monotonic()

    def on_assign(self, tps: Sequence[TopicPartition]) -> None:
        self.last_record_at = time.monotonic()  # the fetch restarts at the sought offset

    def process(self, records: Sequence[Record]) -> BatchResult:
        self.last_record_at = time.monotonic()
        return BatchResult(changes=records)

    def caught_up(self, runtime: StreamRuntime) -> bool:
        """Every partition at its end offset (as of the start), or no record for
        ``idle_timeout_s`` (retention may have deleted a partition's tail)."""
        if all(self.position.get(tp, 0) >= end for tp, end in self.ends.items()):
            return True
        if not runtime.owned:
            if time.monotonic() > self.assign_deadline:
                raise LoaderNotAssigned(self.group, ASSIGNMENT_TIMEOUT_S)
            return False
        idle_s = time.monotonic() - self.last_record_at
        if idle_s >= self.idle_timeout_s:
            logger.warning(
                "warehouse loader: no record for %.0fs short of the end offsets; stopping", idle_s
            )
            return True
        return False


class ProgressObserver(ObserverBase):
    """Reports rows read so far after each batch."""

    def __init__(self, result: LoadResult, expected: int, progress: ProgressCallback) -> None:
        self.result, self.expected, self.progress = result, expected, progress

    def on_batch(self, report: BatchReport) -> None:
        self.progress(self.result.records_read, self.expected)
