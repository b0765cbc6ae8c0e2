"""Timestamp-synchronised input: across topics the handler sees records in timestamp
order whatever the fetch order; a caught-up topic holds the other back only for
max_idle_ms; positions and commits never pass a held record; held records come again
after a worker dies."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.errors import ConfigError
from shopsentry.stream.align import InputAligner
from shopsentry.stream.base import BatchReport, BatchResult
from shopsentry.stream.checkpoint import Backoff
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime
from tests.fakes.log import MemoryLog

from .helpers import EchoHandler, MemorySink

A0, B0 = TopicPartition("a", 0), TopicPartition("b", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Stamps(EchoHandler):
    """Keeps each handled record's (topic, timestamp) too."""

    def __init__(self, fail_on_batch: int | None = None) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []
        self.batches = 0
        self.fail_on_batch = fail_on_batch

    def process(self, records: Sequence[Record]) -> BatchResult:
        self.batches += 1
        if self.batches == self.fail_on_batch:
            raise ConfigError("the worker dies here")
        self.seen += [(r.topic, r.timestamp_ms) for r in records]
        return super().process(records)


def two_topics(a: Sequence[int], b: Sequence[int]) -> MemoryLog:
    """Topic "a" is read first and whole before "b" by the fake's fetch (far ahead)."""
    log = MemoryLog({"a": 1, "b": 1, "out": 1})
    for ts in a:
        log.append("a", b"a%d" % ts, b"k", timestamp_ms=ts)
    for ts in b:
        log.append("b", b"b%d" % ts, b"k", timestamp_ms=ts)
    return log


def runtime(
    log: MemoryLog, handler: EchoHandler, sink: MemorySink, *, idle_ms: int = 20, **kw: object
) -> StreamRuntime:
    options: dict[str, object] = {"idle_poll_s": 0.0, **kw}
    config = RuntimeConfig(
        group_id="g",
        topics=("a", "b"),
        client_id="test",
        batch_max_records=10,
        batch_max_wait_ms=0,
        exit_when_idle_s=0.0,
        backoff=Backoff(initial_s=0.0, max_s=0.0),
        max_idle_ms=idle_ms,
        **options,  # type: ignore[arg-type]
    )
    return StreamRuntime(log, config, handler, sink)


def test_a_topic_read_far_ahead_is_handed_on_in_timestamp_order_across_batches() -> None:
    a, b = range(0, 1000, 10), range(5, 1000, 10)
    handler, sink = Stamps(), MemorySink()
    rt = runtime(two_topics(a, b), handler, sink)
    rt.run()
    stamps = [ts for _, ts in handler.seen]
    assert stamps == sorted([*a, *b])
    assert handler.batches > 10  # many batches, not one sorted lump
    assert sink.stored == {A0: 100, B0: 100}


def test_without_alignment_the_batches_are_as_polled() -> None:
    handler = Stamps()
    rt = runtime(two_topics(range(0, 100, 10), range(5, 100, 10)), handler, MemorySink(), idle_ms=0)
    rt.run()
    assert rt.aligner is None
    assert [t for t, _ in handler.seen] == ["a"] * 10 + ["b"] * 10


def test_one_input_topic_is_never_aligned() -> None:
    config = RuntimeConfig(group_id="g", topics=("a",), client_id="t", max_idle_ms=50)
    rt = StreamRuntime(MemoryLog({"a": 1}), config, EchoHandler(), MemorySink())
    assert rt.aligner is None


def test_a_caught_up_topic_holds_the_other_back_only_for_max_idle_ms() -> None:
    clock = Clock()
    aligner = InputAligner(max_idle_ms=50, max_held=1000, clock=clock)
    aligner.assign([A0, B0])
    aligner.offer([rec("a", 0, ts) for ts in (10, 20)], short=False)
    assert aligner.take(10) == []  # "b" was never read: not caught up, wait for it
    aligner.offer([], short=True)  # a poll came back short: "b" has nothing now
    assert aligner.take(10) == [] and aligner.wait_s() == pytest.approx(0.05)
    clock.now += 0.06
    assert [r.timestamp_ms for r in aligner.take(10)] == [10, 20]
    # "b" stays quiet: a new record of "a" goes on without another wait.
    aligner.offer([rec("a", 2, 30)], short=True)
    assert [r.timestamp_ms for r in aligner.take(10)] == [30]
    # "b" delivers: "a" past b's latest waits again, "a" before it does not.
    aligner.offer([rec("b", 0, 35), rec("a", 3, 32), rec("a", 4, 40)], short=False)
    assert [(r.topic, r.timestamp_ms) for r in aligner.take(10)] == [("a", 32)]
    assert aligner.held_from() == {A0: 4, B0: 0}


def test_a_caught_up_idle_topic_does_not_stop_the_runtime() -> None:
    handler = Stamps()
    rt = runtime(two_topics(range(0, 50, 10), []), handler, MemorySink())
    rt.run()  # returns: everything was handed on once "b" had stayed quiet
    assert handler.seen == [("a", ts) for ts in range(0, 50, 10)]


def test_equal_timestamps_go_on_together() -> None:
    aligner = InputAligner(max_idle_ms=50, max_held=1000, clock=Clock())
    aligner.assign([A0, B0])
    aligner.offer([rec("a", 0, 5), rec("a", 1, 7), rec("b", 0, 7), rec("b", 1, 9)], short=False)
    # a is read to 7 only: b's 7 could have an unread twin on a, so both 7s wait.
    assert [r.timestamp_ms for r in aligner.take(10)] == [5]
    aligner.offer([rec("a", 2, 8)], short=False)
    assert [(r.topic, r.timestamp_ms) for r in aligner.take(10)] == [("a", 7), ("b", 7)]
    # A group larger than a batch goes whole, up to ten batches' worth.
    aligner.offer([rec("a", 3 + i, 8) for i in range(14)], short=True)
    assert [r.offset for r in aligner.take(1)] == list(range(2, 12))
    assert [r.offset for r in aligner.take(3)] == list(range(12, 17))


def test_past_max_held_the_oldest_go_on_out_of_order() -> None:
    aligner = InputAligner(max_idle_ms=50, max_held=3, clock=Clock())
    aligner.assign([A0, B0])
    aligner.offer([rec("a", i, 10 * i) for i in range(5)], short=False)
    assert [r.offset for r in aligner.take(10)] == [0, 1]
    assert len(aligner) == 3 and aligner.forced == 2


def test_positions_and_commits_never_pass_a_held_record() -> None:
    log = two_topics(range(0, 400, 10), range(5, 400, 10))
    handler, sink = Stamps(), MemorySink()
    rt = runtime(log, handler, sink)
    checked: list[int] = []

    class Check:
        def on_batch(self, report: BatchReport) -> None:
            assert rt.aligner is not None
            for tp, first_held in rt.aligner.held_from().items():
                assert sink.stored.get(tp, 0) <= first_held
                assert log.committed.get(("g", tp), 0) <= first_held
            checked.append(len(rt.aligner))

        def on_error(self, error: BaseException, *, retrying: bool) -> None: ...

        def on_recovered(self) -> None: ...

    rt.observers.append(Check())
    rt.run()
    assert max(checked) > 0  # records were held while batches were committed


def test_held_records_come_again_after_the_worker_dies() -> None:
    log = two_topics(range(0, 300, 10), range(5, 300, 10))
    sink = MemorySink()
    first = Stamps(fail_on_batch=3)
    rt = runtime(log, first, sink)
    with pytest.raises(ConfigError):
        rt.run()
    assert rt.aligner is not None and len(rt.aligner) == 0  # dropped with the partitions
    again = Stamps()
    runtime(log, again, sink).run()
    everything = sorted([*range(0, 300, 10), *range(5, 300, 10)])
    assert [ts for _, ts in first.seen + again.seen] == everything
    assert sink.stored == {A0: 30, B0: 30}


def rec(topic: str, offset: int, ts: int) -> Record:
    return Record(topic, 0, offset, ts, b"k", b"v")


def test_records_that_may_go_now_make_the_wait_zero() -> None:
    aligner = InputAligner(max_idle_ms=50, max_held=1000, clock=Clock())
    aligner.assign([A0, B0])
    aligner.offer([rec("a", 0, 10), rec("a", 1, 20), rec("b", 0, 30)], short=False)
    assert aligner.wait_s() == 0.0  # "a"@10: both partitions are read past it
    assert [r.timestamp_ms for r in aligner.take(10)] == [10]
    assert aligner.wait_s() is None  # "a"@20 and "b"@30 wait for more of "a" and "b"


def test_held_records_that_may_go_are_not_kept_waiting_behind_a_blocking_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last of a backlog is all read and held: each batch of it goes on at once, the
    poll between two batches does not wait ``idle_poll_s`` (200 ms a batch on a worker).
    Only the first poll to find the log empty may block (the runtime cannot know yet
    that nothing more is coming); once one has come back short, none may."""
    from tests.fakes import log as fake_log

    polls: list[tuple[float, int, int]] = []  # (timeout, records held, records got)
    poll = fake_log.MemoryConsumer.poll

    def recording(self: object, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        held = len(rt.aligner or ())
        records = poll(self, max_records, timeout)  # type: ignore[arg-type]
        polls.append((timeout, held, len(records)))
        return records

    monkeypatch.setattr(fake_log.MemoryConsumer, "poll", recording)
    a, b = range(0, 1000, 10), range(5, 1000, 10)
    handler = Stamps()
    # A 1 ms idle time runs out between two polls: waiting on it is not what passes.
    rt = runtime(two_topics(a, b), handler, MemorySink(), idle_ms=1, idle_poll_s=30.0)
    rt.run()
    assert [ts for _, ts in handler.seen] == sorted([*a, *b])
    after_a_short_one = [
        timeout
        for (timeout, held, got), (_, _, got_before) in zip(polls[1:], polls, strict=False)
        if held and not got and not got_before
    ]
    assert len(after_a_short_one) > 5 and max(after_a_short_one) <= 0.001
