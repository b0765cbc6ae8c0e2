"""Alert routing (the design's "route to notification service"): a notifier consumes
``fraud-alerts`` in its own consumer group and delivers each alert, by severity, to
webhooks (signed JSON) and email, once per channel even across restarts.

Receivers verify webhooks with :func:`shopsentry.notify.webhook.verify_signature`.
"""

from __future__ import annotations

from shopsentry.notify.base import Channel, DeliveryFailed, severity_at_least
from shopsentry.notify.ledger import DeliveryLedger
from shopsentry.notify.notifier import Notifier, NotifierSetup, NotifierStats, build_channels

__all__ = [
    "Channel",
    "DeliveryFailed",
    "DeliveryLedger",
    "Notifier",
    "NotifierSetup",
    "NotifierStats",
    "build_channels",
    "severity_at_least",
]
