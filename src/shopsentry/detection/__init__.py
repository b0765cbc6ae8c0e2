"""The hot path: detector workers consuming purchases and behaviour, scoring with the
champion model, and writing decisions, fraud alerts and dead letters.

Entry points: :func:`shopsentry.detection.runner.run_detector` (N worker processes, what
``shopsentry detect`` calls) and :class:`shopsentry.detection.worker.Worker` (one worker,
in-process, for tests and embedding).
"""

from shopsentry.detection.worker import Worker, WorkerOptions, WorkerSummary

__all__ = ["Worker", "WorkerOptions", "WorkerSummary"]
