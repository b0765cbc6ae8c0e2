"""Run N detector workers as separate processes and supervise them.

Each worker is its own process (``spawn``: no state inherited by fork, and one Python
interpreter per core), its own consumer-group member and its own metrics port. The
supervisor restarts nothing by itself — restarting a crash loop hides it — but it
reports a worker that died (its partitions move to the survivors through the group
rebalance) and exits non-zero at the end. SIGTERM / SIGINT are forwarded as SIGTERM:
each worker finishes its batch, commits and leaves the group; a second signal kills.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from shopsentry.config import Settings
from shopsentry.detection.worker import Worker, WorkerOptions, WorkerSummary

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9400


def build_worker(settings: Settings, options: WorkerOptions) -> Worker:
    """A worker wired to the configured log, state store, champion model and features."""
    from shopsentry.bus import open_log
    from shopsentry.detection.feature_ops import default_feature_ops
    from shopsentry.detection.metrics import WorkerMetrics
    from shopsentry.detection.model_reload import ModelHolder
    from shopsentry.features.entity_store import open_entity_store
    from shopsentry.features.state_store import open_store
    from shopsentry.models import champion_version, load_champion

    metrics = WorkerMetrics()
    holder = ModelHolder(
        lambda: load_champion(settings),
        lambda: champion_version(settings),
        interval_s=settings.detector.model_poll_interval_s,
        on_outcome=lambda outcome: metrics.model_reloads.labels(outcome).inc(),
    )
    log = open_log(settings)
    store = open_store(settings)
    return Worker(
        settings,
        log,
        store,
        holder,
        default_feature_ops(open_entity_store(settings)),
        options,
        metrics,
        lag_log=lambda: open_log(settings, create_topics=False),
    )


def worker_main(settings: Settings, options: WorkerOptions, log_level: int, results: Any) -> None:
    """Entry point of one worker process."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s worker-{options.index} %(name)s: %(message)s",
    )
    worker = build_worker(settings, options)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("worker %d: signal %d, finishing the batch", options.index, signum)
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        summary = worker.run()
    finally:
        worker.store.close()
        worker.log.close()
    results.put(asdict(summary))


@dataclass
class WorkerStatus:
    index: int
    pid: int | None
    exitcode: int | None
    summary: WorkerSummary | None = None

    @property
    def died(self) -> bool:
        return self.exitcode is not None and self.exitcode != 0


class Supervisor:
    """Starts the worker processes, forwards stop signals, reports deaths."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        options: WorkerOptions | None = None,
        *,
        log_level: int = logging.WARNING,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.template = options or WorkerOptions()
        self.log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._results: Any = self._ctx.Queue()
        self.processes: list[Any] = []
        self.summaries: dict[int, WorkerSummary] = {}
        self._reported: set[int] = set()
        self._stopping = False

    def options_for(self, index: int) -> WorkerOptions:
        t = self.template
        port = t.metrics_port + index if t.metrics_port else 0
        samples = (
            t.latency_samples / f"worker-{index}.npy" if t.latency_samples is not None else None
        )
        return replace(t, index=index, metrics_port=port, latency_samples=samples)

    def start(self) -> None:
        for index in range(self.workers):
            process = self._ctx.Process(
                target=worker_main,
                args=(self.settings, self.options_for(index), self.log_level, self._results),
                name=f"detector-{index}",
            )
            process.start()
            self.processes.append(process)
            logger.info("started worker %d (pid %s)", index, process.pid)

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Ask every live worker to finish its batch and leave (SIGTERM)."""
        self._stopping = True
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()

    def _drain_results(self) -> None:
        while True:
            try:
                data = self._results.get_nowait()
            except queue.Empty:
                return
            self.summaries[data["index"]] = WorkerSummary(**data)

    def poll(self) -> list[WorkerStatus]:
        """Current status; logs each dead worker once."""
        self._drain_results()
        statuses = []
        for index, process in enumerate(self.processes):
            status = WorkerStatus(index, process.pid, process.exitcode, self.summaries.get(index))
            if status.died and index not in self._reported:
                self._reported.add(index)
                alive = sum(p.is_alive() for p in self.processes)
                logger.error(
                    "worker %d (pid %s) died (exit code %s); %d worker(s) take over its partitions",
                    index,
                    process.pid,
                    process.exitcode,
                    alive,
                )
            statuses.append(status)
        return statuses

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> list[WorkerStatus]:
        """Block until every worker exited (or ``timeout``); returns the final statuses."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(p.is_alive() for p in self.processes):
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(interval)
        for process in self.processes:
            process.join(timeout=0.1)
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
