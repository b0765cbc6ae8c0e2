"""What every notification channel is: something that delivers one alert or says why
not, and whether trying again could help."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shopsentry.errors import ShopsentryError
from shopsentry.events.schema import FraudAlert, Severity

SEVERITY_RANK: dict[str, int] = {"medium": 0, "high": 1, "critical": 2}


def severity_at_least(severity: str, minimum: str) -> bool:
    """Whether an alert of ``severity`` goes to a channel that wants ``minimum`` and up."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


class DeliveryFailed(ShopsentryError):
    """One delivery attempt failed.

    ``retryable`` is false when the receiver refused the alert itself (a 4xx, a rejected
    recipient): sending it again would fail the same way, so it goes straight to the
    dead-letter topic. ``retry_after_s`` carries a receiver's Retry-After.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        retryable: bool = True,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@runtime_checkable
class Channel(Protocol):
    """A place alerts go to.

    ``name`` keys the delivery ledger, so it must stay the same across restarts for the
    same destination; ``kind`` is the low-cardinality metric label.
    """

    name: str
    kind: str
    min_severity: Severity

    def deliver(self, alert: FraudAlert) -> None:
        """Deliver once; raise :class:`DeliveryFailed` if the receiver did not accept it."""
        ...

    def close(self) -> None: ...
