"""The service's background consumer: log → alert store.

It reads ``fraud-alerts``, ``decisions`` and ``purchase-events`` (for the event details
and the user's history) plus ``user-behavior`` (for traffic counts) in its own consumer
group (``api.store_group_id``: one per store, since replicas sharing a group would split
the alerts between their stores), writes each polled batch to the store in one
transaction, then commits the offsets. A crash between the two replays the batch, which
the store ignores because it keeps its own per-partition positions. It also samples the
detector group's lag for the dashboard's lag chart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from shopsentry.api.read_model import AlertReadModel
from shopsentry.bus.base import EventLog
from shopsentry.config import Settings
from shopsentry.errors import ShopsentryError

logger = logging.getLogger(__name__)

LAG_SAMPLE_EVERY_S = 5.0
PRUNE_EVERY_S = 600.0
POLL_TIMEOUT_S = 0.1  # also bounds how long stop() waits


def store_topics(settings: Settings) -> dict[str, str]:
    """The topics the store reads, by the role each plays."""
    t = settings.topics
    return {
        "alerts": t.fraud_alerts.name,
        "decisions": t.decisions.name,
        "purchases": t.purchase_events.name,
        "behavior": t.user_behavior.name,
    }


class StoreConsumer:
    """A daemon thread that keeps the store up to date until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        log: EventLog,
        store: AlertReadModel,
        *,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.store = store
        self.group_id = group_id or settings.api.store_group_id
        self.lag_samples: deque[tuple[float, int]] = deque(maxlen=720)
        self.records_applied = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-store-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        topics = list(store_topics(self.settings).values())
        retention = timedelta(milliseconds=self.settings.topics.purchase_events.retention_ms)
        next_lag, next_prune = 0.0, time.monotonic() + PRUNE_EVERY_S
        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self.log.consumer(self.group_id, topics, client_id="shopsentry-api")
                records = consumer.poll(max_records=500, timeout=POLL_TIMEOUT_S)
                if records:
                    self.records_applied += self.store.apply(records)
                    consumer.commit()
                now = time.monotonic()
                if now >= next_lag:
                    next_lag = now + LAG_SAMPLE_EVERY_S
                    self._sample_lag()
                if now >= next_prune and retention.total_seconds() > 0:
                    next_prune = now + PRUNE_EVERY_S
                    self.store.prune(datetime.now(UTC) - retention)
                self.last_error = None
            except ShopsentryError as exc:
                # The log went away or the group moved: back off and rebuild the consumer.
                self.last_error = exc.one_line()
                logger.warning("alert-store consumer: %s; retrying", exc.one_line())
                consumer = self._close(consumer)
                self._stop.wait(1.0)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("alert-store consumer failed; retrying")
                consumer = self._close(consumer)
                self._stop.wait(1.0)
        self._close(consumer)

    @staticmethod
    def _close(consumer: object) -> None:
        close = getattr(consumer, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.debug("closing the store consumer failed", exc_info=True)
        return None

    def _sample_lag(self) -> None:
        try:
            lags = self.log.group_lag(self.settings.detector.group_id)
        except ShopsentryError as exc:
            logger.debug("cannot read the detector lag: %s", exc.one_line())
            return
        self.lag_samples.append((time.time(), sum(max(0, p.lag) for p in lags)))
