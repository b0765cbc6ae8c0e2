"""Email channel: one plain-text message per alert over SMTP (``smtplib``).

The Message-ID is derived from the alert id, so a mail system (or a person) can tell a
redelivery after a crash from a new alert.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from pydantic import SecretStr

from shopsentry.errors import ConfigError
from shopsentry.events.schema import FraudAlert, Severity
from shopsentry.notify.base import DeliveryFailed

logger = logging.getLogger(__name__)


def render_email(alert: FraudAlert, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The message an analyst reads: what happened, how sure the model is, and why."""
    message = EmailMessage()
    message["Subject"] = (
        f"[shopsentry] {alert.severity.upper()} fraud alert: {alert.amount:,.2f} {alert.currency} "
        f"by {alert.user_id}"
    )
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = f"<{alert.alert_id}@shopsentry>"
    message["X-Shopsentry-Alert-Id"] = alert.alert_id
    lines = [
        f"Alert:        {alert.alert_id}",
        f"Severity:     {alert.severity} (band {alert.band})",
        f"Probability:  {alert.probability:.3f} (model {alert.model_version})",
        f"Order:        {alert.order_id}",
        f"User:         {alert.user_id}",
        f"Amount:       {alert.amount:,.2f} {alert.currency}",
        f"Source:       {alert.source}",
        f"Occurred at:  {alert.occurred_at.isoformat()}",
        f"Decided at:   {alert.decided_at.isoformat()}",
    ]
    if alert.top_features:
        lines.append("")
        lines.append("Top features:")
        lines.extend(
            f"  {f.name} = {f.value if f.value is not None else 'missing'} ({f.contribution:+.3f})"
            for f in alert.top_features
        )
    lines.append("")
    lines.append("Review it in the shopsentry dashboard.")
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailChannel:
    """Sends each alert to a fixed list of recipients."""

    kind = "email"
    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: tuple[str, ...],
        *,
        min_severity: Severity = "high",
        starttls: bool = False,
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not recipients:
            raise ConfigError(
                "an SMTP host is set but no recipients", hint="set SHOPSENTRY_NOTIFIER__EMAIL_TO"
            )
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = recipients
        self.min_severity: Severity = min_severity
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"EmailChannel({self.host}:{self.port} → {len(self.recipients)} recipient(s))"

    def deliver(self, alert: FraudAlert) -> None:
        message = render_email(alert, self.sender, self.recipients)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username and self._password is not None:
                    smtp.login(self._username, self._password.get_secret_value())
                refused = smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryFailed(
                self.name, f"SMTP login refused ({exc.smtp_code})", retryable=False
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryFailed(
                self.name, "every recipient was refused", retryable=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            # 4xx: the server is busy or greylisting, try later; 5xx: it will not take it.
            raise DeliveryFailed(
                self.name,
                f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}",
                retryable=exc.smtp_code < 500,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(self.name, f"{type(exc).__name__}: {exc}") from None
        if refused:
            logger.warning("email for %s refused by %d recipient(s)", alert.alert_id, len(refused))
        logger.debug("emailed %s to %d recipient(s)", alert.alert_id, len(self.recipients))

    def close(self) -> None:
        """Nothing held open: each alert uses its own SMTP session."""


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
