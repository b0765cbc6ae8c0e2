"""The notifier: fraud-alerts → channels by severity → ledger, a handler on the stream runtime.

For each alert record, in partition order: decode it (an undecodable record goes to the
notifications dead-letter topic with the reason), then for each channel whose minimum
severity it meets and which the ledger does not show as done, try delivery with
exponential backoff and jitter up to ``max_attempts``; a delivery that still fails (or
that the receiver refuses outright) goes to the dead-letter topic with the channel and
the reason. The ledger is the runtime's sink: a batch's dead-lettered outcomes, its
dead-letter records (the outbox) and its positions are saved in one transaction before
the records are produced and the offsets committed. A stop request interrupts a backoff
wait at once and saves only the alerts that were finished.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter

from shopsentry.bus import BusConfig, open_log
from shopsentry.bus.base import EventLog, Record, TopicPartition
from shopsentry.config import NotifierSettings, Settings
from shopsentry.errors import ConfigError, InvalidEvent
from shopsentry.events.codec import decode_as
from shopsentry.events.schema import FraudAlert
from shopsentry.notify.base import Channel, DeliveryFailed, severity_at_least
from shopsentry.notify.email import EmailChannel
from shopsentry.notify.ledger import DeliveryLedger, Entry
from shopsentry.notify.webhook import WebhookChannel
from shopsentry.stream.base import BatchResult, HandlerBase
from shopsentry.stream.dead_letters import DeadLetterLog
from shopsentry.stream.outbox import Outgoing
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime

logger = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "shopsentry_notifications",
    "Alert deliveries by channel kind and outcome (delivered, retry, dead_letter, duplicate).",
    ["channel", "outcome"],
)
_jitter = secrets.SystemRandom()


def build_channels(config: NotifierSettings) -> list[Channel]:
    """The channels the settings describe; a half-configured channel is a ConfigError."""
    channels: list[Channel] = [
        WebhookChannel(
            url,
            config.webhook_secret,
            min_severity=config.webhook_min_severity,
            timeout_s=config.webhook_timeout_s,
        )
        for url in config.webhook_urls
    ]
    if config.smtp_host:
        channels.append(
            EmailChannel(
                config.smtp_host,
                config.smtp_port,
                config.email_from,
                config.email_to,
                min_severity=config.email_min_severity,
                starttls=config.smtp_starttls,
                username=config.smtp_username,
                password=config.smtp_password,
                timeout_s=config.smtp_timeout_s,
            )
        )
    elif config.email_to:
        raise ConfigError(
            "email recipients are set but no SMTP host", hint="set SHOPSENTRY_NOTIFIER__SMTP_HOST"
        )
    return channels


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None
) -> float:
    """Wait before attempt ``attempt + 1``: initial·2^(attempt-1), capped, with jitter in
    [50 %, 100 %] so many notifiers retrying one receiver do not hit it in lockstep. A
    receiver's Retry-After raises the wait (never past the cap)."""
    base = min(max_s, initial_s * 2 ** (attempt - 1))
    delay: float = base * _jitter.uniform(0.5, 1.0)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


@dataclass(slots=True)
class NotifierStats:
    """What one run did (also in the ``notifications_total`` metric)."""

    records: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    retries: int = 0
    invalid: int = 0


@dataclass(frozen=True, slots=True)
class NotifierSetup:
    """What the notifier needs: its own settings (channels, retries, consumer group), the
    alert and dead-letter topics, the directory of its delivery ledger, and the bus."""

    notifier: NotifierSettings
    alerts_topic: str
    dead_letter_topic: str
    ledger_dir: Path
    bus: BusConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifierSetup:
        return cls(
            notifier=settings.notifier,
            alerts_topic=settings.topics.fraud_alerts.name,
            dead_letter_topic=settings.topics.notifications_dead_letter.name,
            ledger_dir=settings.state_dir,
            bus=BusConfig.from_settings(settings),
        )


class Notifier:
    """Consumes fraud-alerts in ``notifier.group_id`` and delivers them."""

    def __init__(
        self,
        setup: NotifierSetup,
        *,
        log: EventLog | None = None,
        channels: Sequence[Channel] | None = None,
        ledger: DeliveryLedger | None = None,
    ) -> None:
        self.config = setup.notifier
        self.channels = list(channels) if channels is not None else build_channels(self.config)
        if not self.channels:
            raise ConfigError(
                "no notification channel is configured",
                hint="set SHOPSENTRY_NOTIFIER__WEBHOOK_URLS or SHOPSENTRY_NOTIFIER__SMTP_HOST",
            )
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ConfigError(
                "two notification channels have the same name", hint="remove the duplicate URL"
            )
        self._owns_log = log is None
        self.log = log if log is not None else open_log(setup.bus)
        self._owns_ledger = ledger is None
        self.ledger = ledger or DeliveryLedger(
            setup.ledger_dir / f"notifier-{self.config.group_id}.sqlite"
        )
        self.topic = setup.alerts_topic
        self.dead_letter_topic = setup.dead_letter_topic
        self.stats = NotifierStats()
        self.dead_letter_log = DeadLetterLog(logger)

    def run(
        self,
        stop: threading.Event,
        *,
        poll_timeout_s: float = 0.5,
        max_records: int | None = None,
        until_idle: bool = False,
    ) -> NotifierStats:
        """Deliver until ``stop`` is set (or ``max_records`` alerts are handled, or, with
        ``until_idle``, every assigned partition is committed to its end). Offsets of
        finished alerts are saved and committed before returning."""
        logger.info("notifier on %s as %s → %s", self.topic, self.config.group_id, self.channels)
        config = RuntimeConfig(
            group_id=self.config.group_id,
            topics=(self.topic,),
            client_id="shopsentry-notifier",
            batch_max_records=100,
            batch_max_wait_ms=0,
            idle_poll_s=poll_timeout_s,
            max_records=max_records,
        )
        runtime = StreamRuntime(
            self.log,
            config,
            _NotifierHandler(self, stop),
            self.ledger,
            until=self._caught_up if until_idle else None,
            stop=stop,
        )
        runtime.run()
        return self.stats

    def _caught_up(self, runtime: StreamRuntime) -> bool:
        """Whether every assigned partition is committed up to its end (an empty poll
        alone can also mean the group is still joining or a fetch is in flight)."""
        assigned = runtime.owned
        if not assigned:
            return False
        lag = {(p.topic, p.partition): p.lag for p in self.log.group_lag(self.config.group_id)}
        return all(lag.get((tp.topic, tp.partition), 0) <= 0 for tp in assigned)

    def handle(self, record: Record, batch: _Batch, stop: threading.Event) -> bool:
        """Deliver one alert to each channel it is due on; False if stopped mid-retry."""
        try:
            alert: FraudAlert = decode_as("fraud_alert", record.value)
        except InvalidEvent as exc:
            self.dead_letter_log.note(
                record.topic, record.partition, record.offset, "decode", exc.message
            )
            batch.dead_letter(self.dead_letter_topic, record, "decode", exc.message, attempts=0)
            self.stats.invalid += 1
            return True
        for channel in self.channels:
            if not severity_at_least(alert.severity, channel.min_severity):
                continue
            if self.ledger.outcome(alert.alert_id, channel.name) is not None:
                NOTIFICATIONS.labels(channel.kind, "duplicate").inc()
                self.stats.duplicates += 1
                continue
            result = self._deliver(channel, alert, stop)
            if result is None:
                return False
            attempts, failure = result
            if failure is None:
                # At once, not with the batch: the window for a resend stays one delivery.
                self.ledger.record(alert.alert_id, channel.name, "delivered", attempts=attempts)
                NOTIFICATIONS.labels(channel.kind, "delivered").inc()
                self.stats.delivered += 1
                continue
            logger.warning(
                "giving up on %s for %s after %d attempt(s): %s",
                channel.name,
                alert.alert_id,
                attempts,
                failure.reason,
            )
            # Saved with the batch, together with its dead-letter record (the outbox).
            batch.dead_letter(
                self.dead_letter_topic, record, channel.name, failure.reason, attempts=attempts
            )
            batch.entries.append(
                (alert.alert_id, channel.name, "dead_lettered", attempts, failure.reason)
            )
            NOTIFICATIONS.labels(channel.kind, "dead_letter").inc()
            self.stats.dead_lettered += 1
        return True

    def _deliver(
        self, channel: Channel, alert: FraudAlert, stop: threading.Event
    ) -> tuple[int, DeliveryFailed | None] | None:
        """(attempts, None) on success, (attempts, last failure) when out of tries,
        None if stopped."""
        attempt = 0
        while True:
            attempt += 1
            try:
                channel.deliver(alert)
                return attempt, None
            except DeliveryFailed as exc:
                if not exc.retryable or attempt >= self.config.max_attempts:
                    return attempt, exc
                delay = backoff_delay(
                    attempt,
                    self.config.backoff_initial_s,
                    self.config.backoff_max_s,
                    exc.retry_after_s,
                )
                logger.info(
                    "%s for %s failed (%s); attempt %d in %.2f s",
                    channel.name,
                    alert.alert_id,
                    exc.reason,
                    attempt + 1,
                    delay,
                )
                NOTIFICATIONS.labels(channel.kind, "retry").inc()
                self.stats.retries += 1
                if stop.wait(delay):
                    return None

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        if self._owns_ledger:
            self.ledger.close()
        if self._owns_log:
            self.log.close()


@dataclass
class _Batch:
    """What handling a batch of alerts leaves for the ledger's save."""

    outputs: list[Outgoing] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    done: dict[TopicPartition, int] = field(default_factory=dict)

    def dead_letter(
        self, topic: str, record: Record, channel: str, reason: str, *, attempts: int
    ) -> None:
        """The original bytes and key with the reason in headers (the project's DLQ
        convention)."""
        headers = (
            ("dlq.reason", reason.splitlines()[0][:500].encode() if reason else b"unknown"),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.stage", b"notify"),
            ("dlq.channel", channel.encode()),
            ("dlq.attempts", str(attempts).encode()),
        )
        self.outputs.append(Outgoing(topic, record.key, record.value, headers))


class _NotifierHandler(HandlerBase):
    """Alerts in partition order; a stop during a retry wait ends the batch there."""

    def __init__(self, notifier: Notifier, stop: threading.Event) -> None:
        self.notifier = notifier
        self.stop = stop

    def process(self, records: Sequence[Record]) -> BatchResult:
        batch = _Batch()
        for record in records:
            if not self.notifier.handle(record, batch, self.stop):
                break  # stopped mid-retry: this alert and the rest are redelivered next time
            batch.done[record.tp] = record.offset + 1
            self.notifier.stats.records += 1
        return BatchResult(outputs=batch.outputs, changes=batch.entries, done=batch.done)
