"""Reason codes as an analyst reads them: what each top feature says about this
purchase, in words and units, and whether it pushed the score up or down.

The detector publishes ``{name, value, contribution}`` with the raw model inputs
(``amount = 978.69``, ``account_age_days = 0.0024``, ``merchant_category = 8``); this
turns them into "amount $978.69, 12× this user's average", "account 3 minutes old",
"merchant category gift_cards". Encoded categories are read from the purchase itself,
so the text never depends on the model's encoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from shopsentry.features.definitions import FEATURE_DESCRIPTIONS

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_WINDOWS = {"10m": "10 minutes", "1h": "hour", "24h": "24 hours", "30m": "30 minutes"}


def money(value: float, currency: str) -> str:
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {currency}"


def duration(minutes: float) -> str:
    """A span of time the way a person says it: '3 minutes', '5 hours', '12 days'."""
    for size, unit in ((525_600.0, "year"), (1440.0, "day"), (60.0, "hour"), (1.0, "minute")):
        if minutes >= size:
            amount = round(minutes / size)
            return f"{amount} {unit}{'s' if amount != 1 else ''}"
    seconds = round(minutes * 60)
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _times(ratio: float) -> str:
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _count(value: float, noun: str, plural: str | None = None) -> str:
    n = round(value)
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


class _Context:
    """What a phrase may draw on besides its own value."""

    def __init__(
        self, values: Mapping[str, float | None], event: Mapping[str, Any], currency: str
    ) -> None:
        self.values = values
        self.event = event
        self.currency = currency

    def known(self, name: str) -> float | None:
        value = self.values.get(name)
        return None if value is None or math.isnan(value) else value


def _amount(v: float, c: _Context) -> str:
    text = f"amount {money(v, c.currency)}"
    ratio = c.known("amount_ratio")
    average = c.known("user_avg_amount")
    if ratio is None and average:
        ratio = v / average
    if ratio is not None:
        text += f", {_times(ratio)} this user's average"
    return text


def _window(name: str, v: float, c: _Context) -> str:
    kind, _, window = name.rpartition("_")
    span = _WINDOWS.get(window, window)
    if kind == "amount":
        return f"{money(v, c.currency)} spent in the previous {span}"
    nouns = {
        "purchases": ("purchase", None),
        "failed_logins": ("failed login", None),
        "logins": ("login", None),
        "browse_events": ("page view or search", "page views or searches"),
        "cart_adds": ("add-to-cart", None),
        "cards": ("card", None),
        "devices": ("device", None),
    }
    noun, plural = nouns.get(kind, (kind.replace("_", " "), None))
    return f"{_count(v, noun, plural)} in the previous {span}"


_SINCE = {
    "minutes_since_password_change": "password changed {} ago",
    "minutes_since_address_change": "address changed {} ago",
    "minutes_since_new_device_login": "login from a new device {} ago",
    "minutes_since_new_country_login": "login from a new country {} ago",
    "minutes_since_payment_method_added": "payment method added {} ago",
    "card_added_minutes": "card added {} ago",
}
_FLAGS = {
    "new_device": ("new device for this user", "a device this user has used"),
    "new_purchase_device": ("first purchase from this device", "a device this user buys from"),
    "new_card": ("card never used by this user", "a card this user has used"),
    "new_country": ("country new for this user", "a country this user is known in"),
    "new_ip": ("IP address new for this user", "an IP address this user has used"),
    "new_shipping_country": ("ships to a new country", "ships to a usual country"),
    "billing_ne_shipping": ("ships to another country than billing", "ships to billing country"),
    "shipping_ne_home": ("ships away from the user's home country", "ships to home country"),
    "country_ne_home": ("bought outside the user's home country", "bought in home country"),
    "ships_to_changed_address": ("ships to a just-changed address", "not to a changed address"),
}
_FROM_EVENT = {
    "merchant_category": "merchant category",
    "payment_method": "payment method",
    "source": "channel",
}
_PHRASES: dict[str, Callable[[float, _Context], str]] = {
    "amount": _amount,
    "amount_ratio": lambda v, c: f"amount {_times(v)} this user's average",
    "amount_vs_max": lambda v, c: f"amount {_times(v)} this user's largest purchase",
    "user_avg_amount": lambda v, c: f"this user's average purchase {money(v, c.currency)}",
    "account_age_days": lambda v, c: f"account {duration(v * 1440)} old",
    "days_since_last_purchase": lambda v, c: f"previous purchase {duration(v * 1440)} ago",
    "seconds_since_last_behavior": lambda v, c: f"previous activity {duration(v / 60)} ago",
    "purchase_count": lambda v, c: f"{_count(v, 'earlier purchase')} by this user",
    "purchase_frequency": lambda v, c: f"{v:.1f} purchases a day",
    "item_count": lambda v, c: _count(v, "item"),
    "hour_of_day": lambda v, c: f"bought at {int(v):02d}:00 UTC",
    "cards_on_device": lambda v, c: f"{_count(v, 'card')} used on this device",
}
_FOLDED_INTO_AMOUNT = ("amount_ratio", "user_avg_amount")
_NONE = {
    "amount_ratio": "first purchase of this user",
    "user_avg_amount": "first purchase of this user",
    "days_since_last_purchase": "first purchase of this user",
    "account_age_days": "a user never seen before",
}


def phrase(name: str, value: float | None, context: _Context) -> str:
    """One feature in words."""
    if name in _FROM_EVENT and context.event.get(name) is not None:
        return f"{_FROM_EVENT[name]} {context.event[name]}"
    if value is None or math.isnan(value):
        if name in _FROM_EVENT:
            return f"no {_FROM_EVENT[name]}"
        return _NONE.get(name, f"no {_described(name)}")
    if name in _PHRASES:
        return _PHRASES[name](value, context)
    if name in _SINCE:
        return _SINCE[name].format(duration(value))
    if name in _FLAGS:
        return _FLAGS[name][0 if value >= 0.5 else 1]
    if name.rpartition("_")[2] in _WINDOWS:
        return _window(name, value, context)
    return f"{_described(name)}: {value:g}"


def _described(name: str) -> str:
    description = FEATURE_DESCRIPTIONS.get(name, name.replace("_", " "))
    return description.removesuffix(" (encoded)")


def explain(
    features: list[dict[str, Any]], *, currency: str, event: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The features with ``text`` (what it says) and ``direction`` (up or down the score).

    Features that say one thing together share one text ("amount $978.69, 12× this
    user's average" for the amount and its ratio): a reader groups by text."""
    context = _Context({f["name"]: f["value"] for f in features}, event or {}, currency)
    texts = {f["name"]: phrase(f["name"], f["value"], context) for f in features}
    if "amount" in texts and ", " in texts["amount"]:
        # The amount's phrase already says how it compares with the user's average:
        # the comparison features are the same reason, told once.
        for name in _FOLDED_INTO_AMOUNT:
            if name in texts:
                texts[name] = texts["amount"]
    return [
        {
            **f,
            "text": texts[f["name"]],
            "direction": "raises" if f["contribution"] >= 0 else "lowers",
        }
        for f in features
    ]


def explain_alert(alert: dict[str, Any], event: Mapping[str, Any] | None) -> dict[str, Any]:
    """An alert row (from the read model) with its top features explained."""
    features = explain(alert["top_features"], currency=alert["currency"], event=event)
    return {**alert, "top_features": features}
