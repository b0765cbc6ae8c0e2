"""Dead-letter logging that stays readable when bad input arrives by the thousand.

The first dead letter of a quiet period is logged in full (topic, partition, offset,
stage, reason); after that at most one WARNING per ``interval_s`` says how many more
there were, by stage, and the last one's details. Every dead letter still goes to its
topic and its metric: only the log lines are limited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 10.0


class DeadLetterLog:
    """Rate-limited WARNINGs for dead letters; thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window_end = float("-inf")
        self._pending: dict[str, int] = {}
        self._last = ""

    def note(self, topic: str, partition: int, offset: int, stage: str, reason: str) -> None:
        where = f"{topic}[{partition}]@{offset} at {stage}: {reason}"
        with self._lock:
            now = self._clock()
            if now < self._window_end:
                self._pending[stage] = self._pending.get(stage, 0) + 1
                self._last = where
                return
            pending, last = self._pending, self._last
            self._pending, self._last = {}, ""
            self._window_end = now + self.interval_s
        if pending:
            self._log_suppressed(pending, last)
        self.logger.warning("dead-lettering %s", where)

    def flush(self) -> None:
        """Log what the current window suppressed (at shutdown)."""
        with self._lock:
            pending, last = self._pending, self._last
            self._pending, self._last = {}, ""
        if pending:
            self._log_suppressed(pending, last)

    def _log_suppressed(self, pending: dict[str, int], last: str) -> None:
        by_stage = ", ".join(f"{stage}: {n}" for stage, n in sorted(pending.items()))
        self.logger.warning(
            "dead-lettered %d more record(s) in the last %.0fs (%s); last: %s",
            sum(pending.values()),
            self.interval_s,
            by_stage,
            last,
        )
