"""Reading a stretch of a topic to the end it had when the read began."""

from __future__ import annotations

from shopsentry.bus.base import TopicSpec
from shopsentry.bus.reading import read_to_end
from tests.fakes.log import MemoryLog


def _log() -> MemoryLog:
    log = MemoryLog()
    log.create_topics([TopicSpec("t", partitions=2)])
    for n in range(6):
        log.append("t", f"{n}".encode(), None, partition=n % 2)
    return log


def test_every_record_from_the_first_offsets_by_default() -> None:
    assert sorted(r.value for r in read_to_end(_log(), "t")) == [b"0", b"1", b"2", b"3", b"4", b"5"]


def test_from_given_offsets_per_partition() -> None:
    got = sorted((r.partition, r.offset) for r in read_to_end(_log(), "t", starts={0: 2, 1: 3}))
    assert got == [(0, 2)]  # partition 1 starts at its end: nothing to read


def test_records_appended_during_the_read_are_not_waited_for() -> None:
    log = _log()
    seen = []
    for record in read_to_end(log, "t"):
        seen.append(record.value)
        log.append("t", b"later", None, partition=record.partition)
    assert b"later" not in seen and len(seen) == 6


def test_an_unknown_or_empty_topic_reads_nothing() -> None:
    log = MemoryLog()
    log.create_topics([TopicSpec("empty", partitions=1)])
    assert list(read_to_end(log, "missing")) == []
    assert list(read_to_end(log, "empty")) == []
