"""The stream runtime: redeliveries skipped, seek to the sink, one error policy,
observers outside the commit step, a crashed owner's outbox re-produced."""

from __future__ import annotations

import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import BrokerUnavailable, ConfigError, ProduceError, StateUnavailable
from shopsentry.stream.checkpoint import Backoff
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime
from tests.fakes.log import MemoryLog

from .helpers import EchoHandler, MemorySink, Recorder

TP0 = TopicPartition("in", 0)


def make(log: MemoryLog, handler: EchoHandler, sink: MemorySink, **kw: object):  # type: ignore[no-untyped-def]
    config = RuntimeConfig(
        group_id="g",
        topics=("in",),
        client_id="test",
        batch_max_records=kw.pop("batch", 100),  # type: ignore[arg-type]
        batch_max_wait_ms=0,
        idle_poll_s=0.0,
        exit_when_idle_s=0.0,
        backoff=Backoff(initial_s=0.0, max_s=0.0),
    )
    recorder = Recorder()
    runtime = StreamRuntime(log, config, handler, sink, observers=[recorder])
    return runtime, recorder


def fill(n: int) -> MemoryLog:
    log = MemoryLog({"in": 1, "out": 1})
    for i in range(n):
        log.append("in", b"v%d" % i, b"k")
    return log


def outputs(log: MemoryLog) -> list[bytes]:
    return [r.value for r in log.records("out")]


def test_a_batch_is_saved_then_produced_then_committed() -> None:
    log, sink, handler = fill(5), MemorySink(), EchoHandler()
    runtime, recorder = make(log, handler, sink)
    runtime.run()
    assert outputs(log) == [b"V%d" % i for i in range(5)]
    assert sink.stored == {TP0: 5} and sink.state == [b"v%d" % i for i in range(5)]
    assert log.committed[("g", TP0)] == 5
    assert recorder.reports[0].applied == 5 and recorder.reports[0].durable_ms > 0


def test_records_below_the_sinks_position_are_skipped_and_the_consumer_seeks_there() -> None:
    log = fill(6)
    log.committed[("g", TP0)] = 2  # the group is behind the sink (a lost commit)
    sink = MemorySink(stored={TP0: 4})
    handler = EchoHandler()
    runtime, _ = make(log, handler, sink)
    runtime.run()
    assert handler.processed == [b"v4", b"v5"]
    assert sink.stored == {TP0: 6}


def test_a_transient_error_backs_off_and_retries_the_batch_never_exits() -> None:
    log, sink = fill(3), MemorySink(fail=[StateUnavailable("redis away")])
    handler = EchoHandler(fail=[BrokerUnavailable("no broker")])
    runtime, recorder = make(log, handler, sink)
    runtime.run()
    assert [type(e) for e in recorder.errors] == [BrokerUnavailable, StateUnavailable]
    assert recorder.recovered == 1 and not runtime.degraded
    assert handler.resets == 2  # caches dropped after each failed attempt
    assert outputs(log) == [b"V0", b"V1", b"V2"] and sink.saves == 1


def test_a_failed_flush_resends_the_saved_bytes_without_computing_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.log import MemoryProducer

    log, sink, handler = fill(2), MemorySink(), EchoHandler()
    real_flush = MemoryProducer.flush
    failures = [ProduceError("2 not acknowledged", failed=2)]

    def flush(self, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        if failures:
            self.pending.clear()  # lost in flight
            raise failures.pop()
        real_flush(self, timeout)

    monkeypatch.setattr(MemoryProducer, "flush", flush)
    runtime, recorder = make(log, handler, sink)
    runtime.run()
    assert outputs(log) == [b"V0", b"V1"]
    assert handler.processed == [b"v0", b"v1"] and sink.saves == 1
    assert len(recorder.errors) == 1


def test_a_terminal_error_stops_the_runtime() -> None:
    log, sink = fill(2), MemorySink()
    runtime, _ = make(log, EchoHandler(fail=[ConfigError("bad")]), sink)
    with pytest.raises(ConfigError):
        runtime.run()
    assert sink.stored == {} and outputs(log) == []


def test_a_fenced_save_produces_and_commits_nothing() -> None:
    log = fill(3)
    sink = MemorySink()
    handler = EchoHandler()
    runtime, recorder = make(log, handler, sink)
    real_process = handler.process

    def process_while_another_member_takes_over(records):  # type: ignore[no-untyped-def]
        sink.stored[TP0] = 3  # the new owner applied everything meanwhile
        return real_process(records)

    handler.process = process_while_another_member_takes_over  # type: ignore[method-assign]
    runtime.run()
    assert outputs(log) == [] and ("g", TP0) not in log.committed
    assert recorder.reports[0].fenced and handler.resets == 1


def test_a_crashed_owners_outbox_is_re_produced_before_new_records() -> None:
    log = fill(4)
    sink = MemorySink()
    first = EchoHandler()
    # The first owner saved records 0-1 with their outputs, then died before producing.
    from shopsentry.stream.base import Checkpoint
    from shopsentry.stream.outbox import Outgoing

    sink.save(
        Checkpoint(
            changes=[b"v0", b"v1"],
            positions={TP0: 2},
            expected={TP0: 0},
            outbox_id="dead-000000000001",
            outbox=[Outgoing("out", b"k", b"V0"), Outgoing("out", b"k", b"V1")],
        )
    )
    runtime, _ = make(log, first, sink)
    runtime.run()
    assert outputs(log) == [b"V0", b"V1", b"V2", b"V3"]
    assert first.processed == [b"v2", b"v3"]
    # A later clean restart finds the commit at the sink's position: nothing re-produced.
    again, _ = make(log, EchoHandler(), sink)
    again.run()
    assert outputs(log) == [b"V0", b"V1", b"V2", b"V3"]


def test_max_records_and_batch_size_bound_the_work() -> None:
    log, sink, handler = fill(10), MemorySink(), EchoHandler()
    config_runtime, recorder = make(log, handler, sink, batch=3)
    object.__setattr__(config_runtime.config, "max_records", 7)
    config_runtime.run()
    assert [r.records for r in recorder.reports] == [3, 3, 1]
    assert sink.stored == {TP0: 7}
