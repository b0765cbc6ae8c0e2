"""Realistic purchase events for the Kafka tests and benchmark (~400 bytes encoded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shopsentry.events.codec import encode
from shopsentry.events.schema import Purchase

_START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_METHODS = ("card", "paypal", "apple_pay", "google_pay")
_COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN")


def purchase(i: int, users: int = 1000) -> Purchase:
    """The i-th purchase of a deterministic stream over ``users`` users."""
    user = i % users
    country = _COUNTRIES[user % len(_COUNTRIES)]
    return Purchase(
        event_id=f"evt-{i:09d}-{user:06d}",
        source=("web", "mobile", "pos")[i % 3],
        user_id=f"user-{user:06d}",
        occurred_at=_START + timedelta(milliseconds=250 * i),
        order_id=f"order-{i:09d}",
        amount=round(5 + (i * 37 % 50_000) / 100, 2),
        currency="USD",
        item_count=1 + i % 7,
        payment_method=_METHODS[i % len(_METHODS)],
        card_fingerprint=f"card-{(user * 7919) % 1_000_003:016x}",
        device_fingerprint=f"dev-{(user * 104_729) % 1_000_033:016x}",
        ip_fingerprint=f"ip-{(i * 1_299_709) % 65_521:012x}",
        country=country,
        billing_country=country,
        shipping_country=_COUNTRIES[(user + i // 50) % len(_COUNTRIES)],
        merchant_category="electronics" if i % 5 else "gift_cards",
    )


def encoded(i: int, users: int = 1000) -> tuple[bytes, bytes]:
    """(value, key) as shopsentry puts a purchase on the log: key = user_id."""
    event = purchase(i, users)
    return encode(event), event.user_id.encode()
