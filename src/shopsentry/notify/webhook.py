"""Webhook channel: an HTTP POST of the alert as JSON, signed with HMAC-SHA256.

The receiver recomputes ``sha256=<hex HMAC of the raw body>`` with the shared secret
and compares it in constant time (:func:`verify_signature`). The body carries
``sent_at`` (also in the timestamp header), so the signature covers the time too and a
receiver can refuse stale replays. ``Idempotency-Key`` is the alert id: the same alert
delivered again after a crash between POST and ledger write is recognisable as such.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import SecretStr

from shopsentry.errors import ConfigError
from shopsentry.events.schema import FraudAlert, Severity
from shopsentry.notify.base import DeliveryFailed
from shopsentry.redaction import redact_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Shopsentry-Signature"
TIMESTAMP_HEADER = "X-Shopsentry-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses that describe the receiver's state, not the request: worth another try.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver runs: does ``header`` sign exactly this raw ``body``?"""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body), header)


def webhook_body(alert: FraudAlert, sent_at: datetime) -> bytes:
    """The JSON document a receiver gets."""
    document: dict[str, Any] = {
        "type": "fraud_alert",
        "idempotency_key": alert.alert_id,
        "sent_at": sent_at.isoformat(),
        "alert": alert.model_dump(mode="json"),
    }
    return orjson.dumps(document)


class WebhookChannel:
    """POSTs each alert to one URL."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        *,
        min_severity: Severity = "medium",
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(
                f"bad webhook URL {redact_url(url)!r}", hint="use http(s)://host[:port]/path"
            )
        if not secret.get_secret_value():
            raise ConfigError(
                "webhooks are configured but the signing secret is empty",
                hint="set SHOPSENTRY_NOTIFIER__WEBHOOK_SECRET",
            )
        self.url = url
        self.min_severity: Severity = min_severity
        # Stable across restarts for the same URL, without putting the URL (and any token
        # in it) into the ledger or logs.
        self.name = "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"WebhookChannel({redact_url(self.url)!r})"

    def deliver(self, alert: FraudAlert) -> None:
        sent_at = datetime.now(UTC)
        body = webhook_body(alert, sent_at)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "shopsentry-notifier",
            SIGNATURE_HEADER: sign(self._secret.get_secret_value().encode(), body),
            TIMESTAMP_HEADER: str(int(sent_at.timestamp())),
            IDEMPOTENCY_HEADER: alert.alert_id,
        }
        started = time.perf_counter()
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(self.name, f"{type(exc).__name__}: {exc}") from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if 200 <= response.status_code < 300:
            logger.debug(
                "webhook %s accepted %s in %.1f ms",
                redact_url(self.url),
                alert.alert_id,
                elapsed_ms,
            )
            return
        raise DeliveryFailed(
            self.name,
            f"HTTP {response.status_code} from {redact_url(self.url)}",
            retryable=response.status_code in RETRYABLE_STATUS,
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore it, the backoff still applies
