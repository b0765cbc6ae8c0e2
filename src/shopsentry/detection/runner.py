"""Run N detector workers as separate processes and supervise them.

Each worker is its own process (``spawn``: no state inherited by fork, and one Python
interpreter per core), its own consumer-group member and its own metrics port. A worker
that dies — killed, crashed, or stopped by an error that retrying can cure (the cluster
unavailable, records not acknowledged in time) — is restarted after a backoff that
doubles while it keeps dying (``detector.restart_backoff_s`` up to
``restart_backoff_max_s``; a run of ``restart_healthy_s`` resets it); meanwhile its
partitions move to the survivors through the group rebalance. An unavailable cluster
therefore never ends the group. Only a terminal error (bad configuration, no champion
model: :data:`EXIT_TERMINAL`) or a clean stop (``--max-events``, ``--exit-when-idle``)
ends a worker for good. SIGTERM / SIGINT are forwarded as SIGTERM: each worker finishes
its batch, commits and leaves the group; a second signal kills.

Beside the workers runs one more supervised child, the label consumer
(:mod:`shopsentry.features.entity_labels`): chargebacks and analyst reviews into the
entity state while the detector runs, restarted with the same backoff. It has no end of
its own; it is stopped when the last worker has ended for good.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from shopsentry.config import Settings
from shopsentry.detection.worker import Worker, WorkerConfig, WorkerOptions, WorkerSummary
from shopsentry.errors import ShopsentryError

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9400


def build_worker(settings: Settings, options: WorkerOptions) -> Worker:
    """A worker wired to the configured log, state store, champion model and features
    (the composition root of a worker: each part gets the narrow config it reads)."""
    from shopsentry.backup.replay import load_ledger
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.detection.feature_ops import default_feature_ops
    from shopsentry.detection.metrics import WorkerMetrics
    from shopsentry.detection.model_reload import ModelHolder
    from shopsentry.features.entity_store import open_entity_store
    from shopsentry.features.state_store import StateConfig, open_store
    from shopsentry.models import (
        ModelFiles,
        challenger_version,
        champion_version,
        load_challenger,
        load_champion,
    )

    metrics = WorkerMetrics()
    files = ModelFiles.from_settings(settings)
    holder = ModelHolder(
        lambda: load_champion(files),
        lambda: champion_version(files),
        interval_s=settings.detector.model_poll_interval_s,
        on_outcome=lambda outcome: metrics.model_reloads.labels(outcome).inc(),
    )
    challenger = None
    if settings.detector.challenger.mode != "off":
        challenger = ModelHolder(
            lambda: load_challenger(files),
            lambda: challenger_version(files),
            interval_s=settings.detector.model_poll_interval_s,
            on_outcome=lambda outcome: metrics.challenger_reloads.labels(outcome).inc(),
            optional=True,
            name="challenger",
        )
    bus = BusConfig.from_settings(settings)
    state = StateConfig.from_settings(settings)
    log = open_log(bus)
    store = open_store(state)
    return Worker(
        WorkerConfig.from_settings(settings),
        log,
        store,
        holder,
        default_feature_ops(open_entity_store(state)),
        options,
        metrics,
        lag_log=lambda: open_log(bus, create_topics=False),
        challenger=challenger,
        replay_ledger=lambda: load_ledger(settings),
    )


EXIT_TERMINAL = 3  # a worker's exit code for an error retrying cannot cure: not restarted
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: a retryable error ended the worker; restarted


LABELS = -1  # the label consumer's slot index (workers are 0..N-1)


def _child_name(index: int) -> str:
    return "the label consumer" if index == LABELS else f"worker {index}"


def _exit_on_error(index: int, log_level: int, body: Callable[[], Any]) -> Any:
    """Run a child process's body; a shopsentry error ends the process with one line
    and an exit code saying whether a restart can help."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s {'labels' if index == LABELS else f'worker-{index}'}"
        " %(name)s: %(message)s",
    )
    try:
        return body()
    except ShopsentryError as exc:
        logger.error("%s stopped: %s", _child_name(index), exc.one_line())
        sys.exit(EXIT_TRANSIENT if exc.retryable else EXIT_TERMINAL)


def worker_main(settings: Settings, options: WorkerOptions, log_level: int, results: Any) -> None:
    """Entry point of one worker process (exit codes: :func:`_exit_on_error`)."""
    summary = _exit_on_error(options.index, log_level, lambda: _run_worker(settings, options))
    results.put(asdict(summary))


def labels_main(settings: Settings, log_level: int) -> None:
    """Entry point of the label consumer's process: runs until SIGTERM."""
    _exit_on_error(LABELS, log_level, lambda: _run_labels(settings))


def _run_labels(settings: Settings) -> None:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.features.entity_labels import LabelConsumerConfig, label_runtime
    from shopsentry.features.entity_store import open_entity_store
    from shopsentry.features.state_store import StateConfig

    log = open_log(BusConfig.from_settings(settings))
    store = open_entity_store(StateConfig.from_settings(settings))
    runtime = label_runtime(LabelConsumerConfig.from_settings(settings), log, store)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("label consumer: signal %d, finishing the batch", signum)
        runtime.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runtime.run()
    finally:
        store.close()
        log.close()


def _run_worker(settings: Settings, options: WorkerOptions) -> WorkerSummary:
    worker = build_worker(settings, options)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("worker %d: signal %d, finishing the batch", options.index, signum)
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return worker.run()
    finally:
        worker.store.close()
        worker.log.close()


@dataclass
class WorkerStatus:
    index: int
    pid: int | None
    exitcode: int | None
    summary: WorkerSummary | None = None
    restarts: int = 0
    stopped: bool = False  # ended by the group's stop (SIGTERM), whatever its exit code

    @property
    def died(self) -> bool:
        return self.exitcode is not None and self.exitcode != 0 and not self.stopped


@dataclass
class _Slot:
    """One worker index: its current process and its restart bookkeeping."""

    process: Any
    started: float
    restarts: int = 0
    failures_in_a_row: int = 0
    restart_at: float | None = None  # a restart is due at this monotonic time
    final: bool = False  # ended for good (clean stop, terminal error, or stopping)
    stopped: bool = False  # ended by SIGTERM from stop() (e.g. before its handler was set)


class Supervisor:
    """Starts the worker processes, restarts the ones that die, forwards stop signals."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        options: WorkerOptions | None = None,
        *,
        log_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        labels: bool = True,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.labels = labels  # also run the label consumer (feeds the entity fraud features)
        self._clock = clock
        self.template = options or WorkerOptions()
        self.log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._results: Any = self._ctx.Queue()
        self._slots: list[_Slot] = []
        self._labels: _Slot | None = None
        self.summaries: dict[int, WorkerSummary] = {}
        self.deaths: list[tuple[int, int]] = []  # (index, exit code) of each worker that died
        self._stopping = False
        # poll() may run in a thread of its own while another stops the group.
        self._lock = threading.RLock()

    def options_for(self, index: int) -> WorkerOptions:
        t = self.template
        port = t.metrics_port + index if t.metrics_port else 0
        samples = (
            t.latency_samples / f"worker-{index}.npy" if t.latency_samples is not None else None
        )
        return replace(t, index=index, metrics_port=port, latency_samples=samples)

    def _spawn(self, index: int) -> Any:
        if index == LABELS:
            target: Callable[..., None] = labels_main
            args: tuple[Any, ...] = (self.settings, self.log_level)
        else:
            target = worker_main
            args = (self.settings, self.options_for(index), self.log_level, self._results)
        process = self._ctx.Process(target=target, args=args, name=f"detector-{index}")
        process.start()
        logger.info("started %s (pid %s)", _child_name(index), process.pid)
        return process

    def start(self) -> None:
        for index in range(self.workers):
            self._slots.append(_Slot(self._spawn(index), self._clock()))
        if self.labels:
            self._labels = _Slot(self._spawn(LABELS), self._clock())

    @property
    def label_process(self) -> Any:
        """The label consumer's current process (None: not run)."""
        return None if self._labels is None else self._labels.process

    def _children(self) -> list[tuple[int, _Slot]]:
        """Every supervised slot: the workers, then the label consumer."""
        children = list(enumerate(self._slots))
        if self._labels is not None:
            children.append((LABELS, self._labels))
        return children

    @property
    def processes(self) -> list[Any]:
        """The current process of each worker index."""
        return [slot.process for slot in self._slots]

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Ask every live worker to finish its batch and leave (SIGTERM); no restarts."""
        with self._lock:
            self._stop_all()

    def _stop_all(self) -> None:
        self._stopping = True
        for _, slot in self._children():
            slot.restart_at = None
            if slot.process.is_alive() and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        with self._lock:
            self._stopping = True
            for _, slot in self._children():
                if slot.process.is_alive():
                    slot.process.kill()

    def _drain_results(self) -> None:
        while True:
            try:
                data = self._results.get_nowait()
            except queue.Empty:
                return
            self.summaries[data["index"]] = WorkerSummary(**data)

    def poll(self) -> list[WorkerStatus]:
        """Current status; schedules (and, once due, performs) the restart of each worker
        that died, with a doubling backoff; logs each death once."""
        with self._lock:
            return self._poll()

    def _poll(self) -> list[WorkerStatus]:
        self._drain_results()
        now = self._clock()
        for index, slot in self._children():
            if slot.final:
                continue
            if slot.restart_at is None and slot.process.exitcode is not None:
                self._ended(index, slot, now)
            elif slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                slot.restart_at = None
                slot.restarts += 1
                slot.process = self._spawn(index)
                slot.started = now
        self._stop_labels_after_workers()
        return [
            WorkerStatus(
                index,
                slot.process.pid,
                slot.process.exitcode,
                self.summaries.get(index),
                slot.restarts,
                slot.stopped,
            )
            for index, slot in enumerate(self._slots)
        ]

    def _stop_labels_after_workers(self) -> None:
        """The label consumer serves the workers: once every worker has ended for good
        (a clean stop, a terminal error), ask it to finish its batch and stop."""
        labels = self._labels
        if labels is None or labels.final or labels.stopped:
            return
        if not self._slots or not all(slot.final for slot in self._slots):
            return
        labels.stopped = True
        labels.restart_at = None
        if labels.process.is_alive() and labels.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(labels.process.pid, signal.SIGTERM)

    def _ended(self, index: int, slot: _Slot, now: float) -> None:
        code = slot.process.exitcode
        if slot.stopped and index == LABELS:
            slot.final = True  # stopped after the last worker ended
            return
        if self._stopping and code == -signal.SIGTERM:
            slot.final = slot.stopped = True  # our stop reached it before its handler
            return
        if code != 0:
            self.deaths.append((index, code))
        if code == 0 or code == EXIT_TERMINAL or self._stopping:
            slot.final = True
            if code not in (0, None):
                logger.error(
                    "%s (pid %s) ended (exit code %s)", _child_name(index), slot.process.pid, code
                )
            return
        d = self.settings.detector
        healthy = now - slot.started >= d.restart_healthy_s
        slot.failures_in_a_row = 1 if healthy else slot.failures_in_a_row + 1
        delay = min(
            d.restart_backoff_max_s, d.restart_backoff_s * 2 ** (slot.failures_in_a_row - 1)
        )
        slot.restart_at = now + delay
        alive = sum(p.is_alive() for p in self.processes)
        logger.error(
            "%s (pid %s) died (exit code %s); restarting it in %.1fs; %s",
            _child_name(index),
            slot.process.pid,
            code,
            delay,
            "labels wait in the log meanwhile"
            if index == LABELS
            else f"{alive} worker(s) take over its partitions meanwhile",
        )

    def _running(self) -> bool:
        return any(
            slot.process.is_alive() or (slot.restart_at is not None and not self._stopping)
            for _, slot in self._children()
        )

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> list[WorkerStatus]:
        """Block until every worker ended for good (or ``timeout``); the final statuses."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.poll()
        while self._running():
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(interval)
            self.poll()
        for _, slot in self._children():
            slot.process.join(timeout=0.1)
        time.sleep(0.05)  # let queue feeder threads deliver the last summaries
        return self.poll()


def run_detector(
    settings: Settings,
    workers: int,
    options: WorkerOptions | None = None,
    *,
    log_level: int = logging.WARNING,
) -> list[WorkerStatus]:
    """Run ``workers`` processes until they stop (signal, idle or max events)."""
    supervisor = Supervisor(settings, workers, options, log_level=log_level)
    signals_seen = {"n": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals_seen["n"] += 1
        if signals_seen["n"] == 1:
            logger.warning("signal %d: stopping workers after their current batch", signum)
            supervisor.stop()
        else:
            logger.warning("second signal: killing workers")
            supervisor.kill()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.start()
        return supervisor.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def summary_paths(directory: Path, workers: int) -> list[Path]:
    """Where :class:`Supervisor` makes each worker write latency samples."""
    return [directory / f"worker-{i}.npy" for i in range(workers)]
