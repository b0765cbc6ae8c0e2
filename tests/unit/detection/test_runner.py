"""The supervisor restarts a worker that died, with a doubling backoff, and never a worker
that ended cleanly or on a terminal error; a worker's exit code says which it was."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shopsentry.config import Settings
from shopsentry.detection import runner
from shopsentry.detection.runner import EXIT_TERMINAL, EXIT_TRANSIENT, Supervisor, worker_main
from shopsentry.detection.worker import WorkerOptions
from shopsentry.errors import BrokerUnavailable, ConfigError, ProduceError


class FakeProcess:
    """A worker process whose end the test decides."""

    pids = iter(range(1000, 100_000))

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        self.exitcode = -9


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervisor(
    workers: int = 1, *, labels: bool = False
) -> tuple[Supervisor, Clock, list[FakeProcess]]:
    settings = Settings()
    settings = settings.model_copy(
        update={
            "detector": settings.detector.model_copy(
                update={
                    "restart_backoff_s": 1.0,
                    "restart_backoff_max_s": 4.0,
                    "restart_healthy_s": 60.0,
                }
            )
        }
    )
    clock = Clock()
    sup = Supervisor(settings, workers, clock=clock, labels=labels)
    spawned: list[FakeProcess] = []

    def spawn(index: int) -> FakeProcess:
        process = FakeProcess()
        spawned.append(process)
        return process

    sup._spawn = spawn  # type: ignore[method-assign]
    sup.start()
    return sup, clock, spawned


def test_a_killed_worker_is_restarted_after_a_doubling_backoff() -> None:
    sup, clock, spawned = supervisor()
    delays = []
    for _ in range(4):
        current = spawned[-1]
        current.exitcode = -9
        died_at = clock.now
        sup.poll()  # notices the death, schedules the restart
        before = len(spawned)
        while len(spawned) == before:
            clock.now += 0.25
            sup.poll()
        delays.append(clock.now - died_at)
    assert delays == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at restart_backoff_max_s
    (status,) = sup.poll()
    assert status.restarts == 4 and status.exitcode is None and not status.died


def test_a_worker_that_ran_healthy_restarts_after_the_first_backoff_again() -> None:
    sup, clock, spawned = supervisor()
    for _ in range(3):
        spawned[-1].exitcode = EXIT_TRANSIENT
        sup.poll()
        clock.now += 10
        sup.poll()
    clock.now += 61  # the last incarnation ran longer than restart_healthy_s
    spawned[-1].exitcode = 1
    sup.poll()
    clock.now += 1.0
    sup.poll()
    assert len(spawned) == 5


@pytest.mark.parametrize("code", [0, EXIT_TERMINAL])
def test_a_clean_stop_or_a_terminal_error_is_not_restarted(code: int) -> None:
    sup, _clock, spawned = supervisor(2)
    spawned[0].exitcode = code
    spawned[1].exitcode = 0
    statuses = sup.wait(timeout=5, interval=0)
    assert len(spawned) == 2
    assert [s.exitcode for s in statuses] == [code, 0]
    assert statuses[0].died == (code != 0)


def test_stop_cancels_pending_restarts() -> None:
    sup, clock, spawned = supervisor()
    spawned[0].exitcode = -9
    sup.poll()
    sup.stop()
    clock.now += 100
    statuses = sup.wait(timeout=5, interval=0)
    assert len(spawned) == 1 and statuses[0].exitcode == -9


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProduceError("500 record(s) not acknowledged within 30s", failed=500), EXIT_TRANSIENT),
        (BrokerUnavailable("no Kafka broker answered"), EXIT_TRANSIENT),
        (ConfigError("bad setting"), EXIT_TERMINAL),
    ],
)
def test_a_worker_ends_with_an_exit_code_saying_whether_a_restart_helps(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception, code: int
) -> None:
    def fail(settings: Settings, options: WorkerOptions) -> Any:
        raise error

    monkeypatch.setattr(runner, "_run_worker", fail)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        worker_main(Settings(), WorkerOptions(index=3), logging.ERROR, None)
    assert exited.value.code == code
    assert f"worker 3 stopped: {error}" in caplog.text


def test_a_worker_ended_by_the_stop_signal_did_not_die() -> None:
    sup, _clock, spawned = supervisor(2)
    sup.stop()
    spawned[0].exitcode = -15  # SIGTERM before its handler was installed
    spawned[1].exitcode = 0
    statuses = sup.wait(timeout=5, interval=0)
    assert [s.died for s in statuses] == [False, False]
    assert sup.deaths == []


def test_the_label_consumer_is_restarted_like_a_worker_and_stopped_after_the_last() -> None:
    sup, clock, spawned = supervisor(2, labels=True)
    assert len(spawned) == 3 and sup.label_process is spawned[2]
    spawned[2].exitcode = EXIT_TRANSIENT  # the label consumer died: restarted after 1 s
    sup.poll()
    clock.now += 1.0
    sup.poll()
    assert len(spawned) == 4 and sup.label_process is spawned[3]
    assert [s.index for s in sup.poll()] == [0, 1]  # statuses are the workers'
    spawned[3].pid = None  # type: ignore[assignment]  # no signal to a real process
    spawned[0].exitcode = 0
    spawned[1].exitcode = 0
    sup.poll()
    assert sup._labels is not None and sup._labels.stopped  # asked to stop
    spawned[3].exitcode = -15
    statuses = sup.wait(timeout=5, interval=0)
    assert [s.exitcode for s in statuses] == [0, 0] and len(spawned) == 4
