"""The notifier against a real HTTP receiver, a real SMTP server and a real event log."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.integration.notify.conftest import (
    SECRET,
    Mailbox,
    Receiver,
    make_alert,
    make_settings,
    publish,
)

from shopsentry.bus import BusConfig, open_log
from shopsentry.bus.base import Consumer, EventLog, Record
from shopsentry.config import Settings
from shopsentry.errors import CommitFailed
from shopsentry.notify import DeliveryLedger, Notifier, NotifierSetup
from shopsentry.notify.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

pytestmark = pytest.mark.integration


def run_once(settings: Settings, records: int | None = None, **kwargs: Any) -> Notifier:
    """Run a notifier until it has handled ``records`` alerts (or, with None, until a poll
    comes back empty); a watchdog stops it if it never gets there."""
    notifier = Notifier(NotifierSetup.from_settings(settings), **kwargs)
    stop = threading.Event()
    watchdog = threading.Timer(120, stop.set)
    watchdog.start()
    try:
        if records is None:
            notifier.run(stop, until_idle=True, poll_timeout_s=0.5)
        else:
            notifier.run(stop, max_records=records, poll_timeout_s=0.5)
    finally:
        watchdog.cancel()
        notifier.close()
    assert not stop.is_set(), "the watchdog had to stop the notifier"
    return notifier


def dead_letters(settings: Settings) -> list[Record]:
    """Everything on the notifications dead-letter topic (as its end offsets count)."""
    log = open_log(BusConfig.from_settings(settings))
    try:
        topic = settings.topics.notifications_dead_letter.name
        expected = sum(p.end_offset - p.start_offset for p in log.describe_topic(topic).partitions)
        consumer = log.consumer(None, [topic])
        out: list[Record] = []
        for _ in range(30):
            if len(out) >= expected:
                break
            out.extend(consumer.poll(100, timeout=1.0))
        consumer.close()
        return out
    finally:
        log.close()


def metric(channel: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "shopsentry_notifications_total", {"channel": channel, "outcome": outcome}
        )
        or 0.0
    )


def test_routes_by_severity_signed_once_each(
    tmp_path: Path, bus: str, receiver: Receiver, mailbox: Mailbox
) -> None:
    settings = make_settings(tmp_path, bus, receiver, mailbox)
    alerts = [make_alert(1, "medium"), make_alert(2, "high"), make_alert(3, "critical")]
    publish(settings, alerts)
    delivered_before = metric("webhook", "delivered")

    notifier = run_once(settings, 3)

    # Webhook wants medium and up: all three; email wants high and up: two.
    keys = [r.headers[IDEMPOTENCY_HEADER] for r in receiver.accepted()]
    assert sorted(keys) == sorted(a.alert_id for a in alerts)
    for request in receiver.requests:
        assert verify_signature(SECRET.encode(), request.body, request.headers[SIGNATURE_HEADER])
        assert not verify_signature(
            b"wrong-secret", request.body, request.headers[SIGNATURE_HEADER]
        )
        assert not verify_signature(
            SECRET.encode(), request.body + b" ", request.headers[SIGNATURE_HEADER]
        )
        body = json.loads(request.body)
        assert (
            body["idempotency_key"]
            == body["alert"]["alert_id"]
            == request.headers[IDEMPOTENCY_HEADER]
        )
        assert int(request.headers[TIMESTAMP_HEADER]) > 0
        assert request.path == "/hooks/fraud?token=abc"
    mailed = sorted(m["X-Shopsentry-Alert-Id"] for _, _, m in mailbox.messages)
    assert mailed == ["alert-evt-0002", "alert-evt-0003"]
    sender, rcpts, message = mailbox.messages[0]
    assert sender == "shopsentry@localhost"
    assert rcpts == ["fraud-team@example.com"]
    assert message["Subject"].startswith("[shopsentry] ")
    assert "amount_vs_user_avg" in message.get_payload()
    assert notifier.stats.delivered == 5
    assert metric("webhook", "delivered") - delivered_before == 3


def test_receiver_failing_first_then_recovering_gets_each_alert_once(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    settings = make_settings(tmp_path, bus, receiver, None)
    alerts = [make_alert(i, "high") for i in range(4)]
    publish(settings, alerts)

    notifier = run_once(settings, 4)

    assert [r.status for r in receiver.requests[:2]] == [500, 503]
    accepted = Counter(r.headers[IDEMPOTENCY_HEADER] for r in receiver.accepted())
    assert accepted == Counter(a.alert_id for a in alerts)
    assert notifier.stats.retries == 2
    assert notifier.stats.dead_lettered == 0
    assert dead_letters(settings) == []


def test_last_failed_try_goes_to_dead_letter_with_reason(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    receiver.then = 500
    settings = make_settings(tmp_path, bus, receiver, None, max_attempts=3)
    alert = make_alert(7, "critical")
    publish(settings, [alert])

    notifier = run_once(settings, 1)

    assert len(receiver.requests) == 3
    assert notifier.stats.dead_lettered == 1
    (dlq,) = dead_letters(settings)
    assert json.loads(dlq.value)["alert_id"] == alert.alert_id  # the original bytes
    assert dlq.key == alert.user_id.encode()
    reason = dlq.header("dlq.reason") or b""
    assert reason.startswith(b"HTTP 500 from http://127.0.0.1:")
    # The URL's secret query values (a token) are masked, their names kept.
    assert reason.endswith(b"/hooks/fraud?token=***") and b"abc" not in reason
    assert dlq.header("dlq.stage") == b"notify"
    assert dlq.header("dlq.topic") == settings.topics.fraud_alerts.name.encode()
    assert dlq.header("dlq.attempts") == b"3"
    assert (dlq.header("dlq.channel") or b"").startswith(b"webhook:")

    # The offset was committed and the ledger knows: a restart does not try again.
    receiver.then = 200
    again = run_once(settings)
    assert again.stats.records == 0
    assert len(receiver.requests) == 3


def test_refused_alert_is_not_retried(tmp_path: Path, bus: str, receiver: Receiver) -> None:
    receiver.then = 400
    settings = make_settings(tmp_path, bus, receiver, None)
    publish(settings, [make_alert(1, "medium")])

    notifier = run_once(settings, 1)

    assert len(receiver.requests) == 1
    assert notifier.stats.retries == 0
    assert [r.header("dlq.attempts") for r in dead_letters(settings)] == [b"1"]


class CrashBeforeCommit:
    """An event log whose consumers die at the first commit: the process crashed after
    delivering but before the offsets were stored."""

    def __init__(self, log: EventLog, error: Exception | None = None) -> None:
        self._log = log
        self._error = error or RuntimeError("simulated crash before commit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def consumer(self, *args: Any, **kwargs: Any) -> Consumer:
        inner = self._log.consumer(*args, **kwargs)
        error = self._error

        class Dying:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def commit(self, offsets: Any = None, **_kw: Any) -> None:
                raise error

        return Dying()  # type: ignore[return-value]


def test_restart_after_crash_before_commit_delivers_no_duplicates(
    tmp_path: Path, bus: str, receiver: Receiver, mailbox: Mailbox
) -> None:
    settings = make_settings(tmp_path, bus, receiver, mailbox)
    alerts = [make_alert(i, "critical") for i in range(5)]
    publish(settings, alerts)

    log = open_log(BusConfig.from_settings(settings))
    crashing = Notifier(NotifierSetup.from_settings(settings), log=CrashBeforeCommit(log))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.run(threading.Event(), until_idle=True, poll_timeout_s=3.0)
    crashing.close()
    log.close()
    delivered_first = len(receiver.accepted())
    assert delivered_first >= 1

    restarted = run_once(settings)

    # Nothing was committed, but the ledger holds the positions it reached (saved before
    # the commit): the restart resumes there, and what it re-reads the ledger skips;
    # each alert reached each channel exactly once.
    assert crashing.stats.records + restarted.stats.records == 5
    assert restarted.stats.duplicates == 0
    assert Counter(r.headers[IDEMPOTENCY_HEADER] for r in receiver.accepted()) == Counter(
        a.alert_id for a in alerts
    )
    assert Counter(m["X-Shopsentry-Alert-Id"] for _, _, m in mailbox.messages) == Counter(
        a.alert_id for a in alerts
    )


def test_restart_in_the_middle_continues_where_it_stopped(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, bus, receiver, None)
    alerts = [make_alert(i, "high") for i in range(6)]
    publish(settings, alerts)

    first = Notifier(NotifierSetup.from_settings(settings))
    first.run(threading.Event(), max_records=2, poll_timeout_s=3.0)
    first.close()
    assert len(receiver.accepted()) == 2

    second = run_once(settings, 4)
    assert second.stats.records == 4
    assert second.stats.duplicates == 0
    assert sorted(r.headers[IDEMPOTENCY_HEADER] for r in receiver.accepted()) == sorted(
        a.alert_id for a in alerts
    )


def test_stop_during_backoff_leaves_the_alert_for_the_next_run(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    receiver.then = 503
    # A long backoff: the stop request must cut the wait short.
    settings = make_settings(
        tmp_path, bus, receiver, None, backoff_initial_s=60.0, backoff_max_s=60.0
    )
    alert = make_alert(1, "critical")
    publish(settings, [alert])

    stop = threading.Event()
    notifier = Notifier(NotifierSetup.from_settings(settings))
    worker = threading.Thread(target=notifier.run, args=(stop,), kwargs={"poll_timeout_s": 0.2})
    worker.start()
    assert receiver.arrived.wait(30)
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    notifier.close()
    assert notifier.stats.records == 0
    ledger = DeliveryLedger(settings.state_dir / f"notifier-{settings.notifier.group_id}.sqlite")
    assert ledger.count() == 0
    ledger.close()

    receiver.then = 200
    resumed = run_once(settings, 1)
    assert resumed.stats.delivered == 1
    assert [r.headers[IDEMPOTENCY_HEADER] for r in receiver.accepted()] == [alert.alert_id]


def test_undecodable_alert_is_dead_lettered_and_the_rest_flow(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, bus, receiver, None)
    publish(
        settings, [make_alert(1, "high")], extra=[b"{not json", b'{"event_type": "fraud_alert"}']
    )

    notifier = run_once(settings, 3)

    assert notifier.stats.invalid == 2
    assert notifier.stats.delivered == 1
    reasons = sorted(r.header("dlq.channel") for r in dead_letters(settings))
    assert reasons == [b"decode", b"decode"]
    assert {r.value for r in dead_letters(settings)} == {
        b"{not json",
        b'{"event_type": "fraud_alert"}',
    }


def test_commit_refused_after_a_rebalance_does_not_stop_the_notifier(
    tmp_path: Path, bus: str, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, bus, receiver, None)
    alerts = [make_alert(i, "high") for i in range(3)]
    publish(settings, alerts)

    log = open_log(BusConfig.from_settings(settings))
    moved = CommitFailed("the group rebalanced")
    notifier = Notifier(NotifierSetup.from_settings(settings), log=CrashBeforeCommit(log, moved))  # type: ignore[arg-type]
    stop = threading.Event()
    watchdog = threading.Timer(60, stop.set)
    watchdog.start()
    notifier.run(stop, max_records=3, poll_timeout_s=0.5)
    watchdog.cancel()
    assert not stop.is_set()
    notifier.close()
    log.close()
    assert notifier.stats.delivered == 3

    # The next owner resumes at the ledger's positions (the log's commit was lost):
    # nothing is delivered twice.
    again = run_once(settings)
    assert again.stats.delivered == 0
    assert len(receiver.accepted()) == 3
