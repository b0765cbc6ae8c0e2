"""The service's background consumer: log → alert read model, on the stream runtime.

It reads ``fraud-alerts``, ``decisions`` and ``purchase-events`` (for the event details
and the user's history) plus ``user-behavior`` (for traffic counts) in its own consumer
group (``api.store_group_id``: one per store, since replicas sharing a group would split
the alerts between their stores). The read model is the runtime's sink: each batch's
rows and positions are written in one transaction, then offsets are committed; a crash
between the two replays records the runtime skips. It also samples the detector group's
lag for the dashboard's lag chart and prunes rows past the log's retention.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from shopsentry.api.read_model import AlertReadModel
from shopsentry.bus.base import EventLog, Record
from shopsentry.config import TopicsSettings
from shopsentry.errors import ShopsentryError
from shopsentry.stream.base import BatchReport, BatchResult, HandlerBase
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime

logger = logging.getLogger(__name__)

LAG_SAMPLE_EVERY_S = 5.0
PRUNE_EVERY_S = 600.0
POLL_TIMEOUT_S = 0.1  # also bounds how long stop() waits
RESTART_AFTER_S = 1.0  # after an error the runtime does not retry itself


def store_topics(t: TopicsSettings) -> dict[str, str]:
    """The topics the store reads, by the role each plays."""
    return {
        "alerts": t.fraud_alerts.name,
        "decisions": t.decisions.name,
        "purchases": t.purchase_events.name,
        "behavior": t.user_behavior.name,
    }


class ReadModelHandler(HandlerBase):
    """The batch is the change: the read model applies it in its save."""

    def process(self, records: Sequence[Record]) -> BatchResult:
        return BatchResult(changes=records)


class StoreConsumer:
    """A daemon thread that keeps the read model up to date until :meth:`stop`.

    It reads ``topics`` (:func:`store_topics`) in consumer group ``group_id``, prunes
    what is older than the purchase topic's retention, and samples the lag of the
    detector's group ``detector_group_id`` for the dashboard."""

    def __init__(
        self,
        topics: TopicsSettings,
        log: EventLog,
        store: AlertReadModel,
        *,
        group_id: str,
        detector_group_id: str,
    ) -> None:
        self.topics = topics
        self.log = log
        self.store = store
        self.group_id = group_id
        self.detector_group_id = detector_group_id
        self.lag_samples: deque[tuple[float, int]] = deque(maxlen=720)
        self.records_applied = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._runtime: StreamRuntime | None = None
        self._next_lag = 0.0
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self._thread = threading.Thread(target=self._run, name="api-store-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._runtime is not None:
            self._runtime.request_stop()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- observer of the runtime -----------------------------------------------------
    def on_batch(self, report: BatchReport) -> None:
        self.records_applied += report.applied
        self.last_error = None
        self._tick()

    def on_error(self, error: BaseException, *, retrying: bool) -> None:
        self.last_error = _describe(error)

    def on_recovered(self) -> None:
        self.last_error = None

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        config = RuntimeConfig(
            group_id=self.group_id,
            topics=tuple(store_topics(self.topics).values()),
            client_id="shopsentry-api",
            batch_max_records=500,
            batch_max_wait_ms=0,
            idle_poll_s=POLL_TIMEOUT_S,
            produces=False,
        )
        while not self._stop.is_set():
            runtime = self._runtime = StreamRuntime(
                self.log,
                config,
                ReadModelHandler(),
                self.store,
                observers=[self],
                until=self._idle,
            )
            if self._stop.is_set():
                break
            try:
                runtime.run()
            except Exception as exc:  # the service stays up: report, back off, rebuild
                self.last_error = _describe(exc)
                logger.warning("alert read model consumer: %s; restarting", self.last_error)
                self._stop.wait(RESTART_AFTER_S)

    def _idle(self, runtime: StreamRuntime) -> bool:
        self._tick()
        return False

    def _tick(self) -> None:
        """The periodic chores: the detector lag sample and the retention prune."""
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + LAG_SAMPLE_EVERY_S
            self._sample_lag()
        retention = timedelta(milliseconds=self.topics.purchase_events.retention_ms)
        if now >= self._next_prune and retention.total_seconds() > 0:
            self._next_prune = now + PRUNE_EVERY_S
            self.store.prune(datetime.now(UTC) - retention)

    def _sample_lag(self) -> None:
        try:
            lags = self.log.group_lag(self.detector_group_id)
        except ShopsentryError as exc:
            logger.debug("cannot read the detector lag: %s", exc.one_line())
            return
        self.lag_samples.append((time.time(), sum(max(0, p.lag) for p in lags)))


def _describe(error: BaseException) -> str:
    if isinstance(error, ShopsentryError):
        return error.one_line()
    return f"{type(error).__name__}: {error}"
