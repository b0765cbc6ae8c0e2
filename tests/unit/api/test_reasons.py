"""Reason codes in words: units, meaning and direction, never a raw float."""

from __future__ import annotations

import math

import pytest

from shopsentry.api.reasons import duration, explain


def feature(name: str, value: float | None, contribution: float = 0.2) -> dict:
    return {"name": name, "value": value, "contribution": contribution}


def test_amount_reads_as_money_against_the_users_average() -> None:
    features = [feature("amount", 978.6900024414062), feature("user_avg_amount", 81.0)]
    texts = [f["text"] for f in explain(features, currency="USD")]
    assert texts == ["amount $978.69, 12× this user's average"] * 2  # one reason, told once
    eur = explain([feature("amount", 12.5), feature("amount_ratio", 1.25)], currency="EUR")
    assert eur[0]["text"] == "amount €12.50, 1.2× this user's average"


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("account_age_days", 0.0024, "account 3 minutes old"),
        ("account_age_days", 40.0, "account 40 days old"),
        ("account_age_days", None, "a user never seen before"),
        ("amount_ratio", math.nan, "first purchase of this user"),
        ("minutes_since_password_change", 125.0, "password changed 2 hours ago"),
        ("card_added_minutes", 4.0, "card added 4 minutes ago"),
        ("new_device", 1.0, "new device for this user"),
        ("purchases_10m", 3.0, "3 purchases in the previous 10 minutes"),
        ("failed_logins_1h", 1.0, "1 failed login in the previous hour"),
        ("amount_24h", 1500.0, "$1,500.00 spent in the previous 24 hours"),
        ("hour_of_day", 3.0, "bought at 03:00 UTC"),
        ("browse_events_30m", 0.0, "0 page views or searches in the previous 30 minutes"),
        ("merchant_category", None, "no merchant category"),
    ],
)
def test_each_kind_of_feature_reads_in_words(name: str, value: float | None, text: str) -> None:
    assert explain([feature(name, value)], currency="USD")[0]["text"] == text


def test_encoded_categories_are_read_from_the_purchase() -> None:
    event = {"merchant_category": "gift_cards", "payment_method": "card"}
    explained = explain(
        [feature("merchant_category", 8.0), feature("payment_method", 0.0, -0.1)],
        currency="USD",
        event=event,
    )
    assert [(f["text"], f["direction"]) for f in explained] == [
        ("merchant category gift_cards", "raises"),
        ("payment method card", "lowers"),
    ]


def test_durations() -> None:
    assert [duration(m) for m in (0.5, 1, 59, 61, 1440 * 3, 525_600 * 2)] == [
        "30 seconds",
        "1 minute",
        "59 minutes",
        "1 hour",
        "3 days",
        "2 years",
    ]
