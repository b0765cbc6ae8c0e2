"""Notifier pieces that need no receiver: signatures, backoff, routing, config checks."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from shopsentry.config import NotifierSettings
from shopsentry.errors import ConfigError
from shopsentry.events.schema import FraudAlert
from shopsentry.notify import build_channels, severity_at_least
from shopsentry.notify.email import render_email
from shopsentry.notify.notifier import backoff_delay
from shopsentry.notify.webhook import redact_url, sign, verify_signature, webhook_body

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALERT = FraudAlert(
    event_id="evt-1",
    alert_id="alert-evt-1",
    source="pos",
    user_id="user-1",
    occurred_at=NOW,
    order_id="order-1",
    amount=1234.5,
    currency="EUR",
    probability=0.91,
    severity="high",
    band="review",
    model_version="2",
    decided_at=NOW,
)


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = webhook_body(ALERT, NOW)
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) == f"sha256={expected}"
    assert verify_signature(b"k", body, f"sha256={expected}")
    assert not verify_signature(b"k", body + b"\n", f"sha256={expected}")
    assert not verify_signature(b"other", body, f"sha256={expected}")
    assert not verify_signature(b"k", body, expected)  # the scheme prefix is required
    assert not verify_signature(b"k", body, None)


def test_body_carries_alert_and_time() -> None:
    import json

    doc = json.loads(webhook_body(ALERT, NOW))
    assert doc["idempotency_key"] == "alert-evt-1"
    assert doc["alert"]["amount"] == 1234.5
    assert doc["sent_at"].startswith("2026-11-25T12:00:00")


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10, 30])
def test_backoff_grows_exponentially_with_bounded_jitter(attempt: int) -> None:
    base = min(8.0, 0.5 * 2 ** (attempt - 1))
    for _ in range(50):
        delay = backoff_delay(attempt, 0.5, 8.0)
        assert base * 0.5 <= delay <= base


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    assert backoff_delay(1, 0.01, 5.0, retry_after_s=3.0) == 3.0
    assert backoff_delay(1, 0.01, 5.0, retry_after_s=300.0) == 5.0


def test_severity_order() -> None:
    assert severity_at_least("critical", "high")
    assert severity_at_least("high", "high")
    assert not severity_at_least("medium", "high")


def test_channels_from_settings() -> None:
    config = NotifierSettings(
        webhook_urls=("https://hooks.example.com/a?token=x", "http://127.0.0.1:9/b"),
        webhook_secret=SecretStr("s"),
        smtp_host="127.0.0.1",
        email_to=("a@example.com",),
    )
    channels = build_channels(config)
    assert [c.kind for c in channels] == ["webhook", "webhook", "email"]
    assert channels[0].name != channels[1].name
    assert "x" not in repr(channels[0]).split("?", 1)[1]  # the token's value is masked
    # The ledger key is stable for the same URL.
    assert build_channels(config)[0].name == channels[0].name
    for channel in channels:
        channel.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (NotifierSettings(webhook_urls=("https://x.example/h",)), "secret is empty"),
        (
            NotifierSettings(webhook_urls=("ftp://x.example/h",), webhook_secret=SecretStr("s")),
            "bad webhook URL",
        ),
        (NotifierSettings(email_to=("a@example.com",)), "no SMTP host"),
        (NotifierSettings(smtp_host="127.0.0.1"), "no recipients"),
    ],
)
def test_half_configured_channels_are_refused(config: NotifierSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_channels(config)


def test_redact_url_masks_query_secrets_and_userinfo() -> None:
    assert (
        redact_url("https://user:pw@h.example:8443/p?token=1")
        == "https://***@h.example:8443/p?token=***"
    )


def test_email_names_the_alert() -> None:
    message = render_email(ALERT, "s@x", ("a@x", "b@x"))
    assert message["Message-ID"] == "<alert-evt-1@shopsentry>"
    assert message["To"] == "a@x, b@x"
    assert "1,234.50 EUR" in message["Subject"]
    assert "HIGH" in message["Subject"]
    assert "0.910" in message.get_content()
