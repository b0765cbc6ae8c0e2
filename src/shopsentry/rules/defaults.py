"""The default rule set: the hand-written rules a fraud team starts with, in shadow.

They were the model card's "rules baseline" (the bar the model must beat) before analysts
could write rules; they stay that, now as ordinary CEL rules, so the same text is what the
model card compares against and what an analyst sees (and may activate) on the rules page.
Every feature read is guarded with ``has()``: a rule does not fire on an unknown.
"""

from __future__ import annotations

from shopsentry.rules.model import Rule, RuleSet

OWNER = "shopsentry defaults"

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        name="amount_spike",
        expression=(
            "has(features.amount_ratio) && features.amount_ratio > 5.0"
            " && has(features.purchase_count) && features.purchase_count > 0.5"
        ),
        action="review",
        note="amount more than 5x the user's average purchase (users with history)",
    ),
    Rule(
        name="new_device_new_country",
        expression=(
            "has(features.new_device) && features.new_device > 0.5"
            " && has(features.new_country) && features.new_country > 0.5"
        ),
        action="review",
        note="new device and new country for the user",
    ),
    Rule(
        name="purchase_burst",
        expression="has(features.purchases_10m) && features.purchases_10m > 3.0",
        action="review",
        note="more than 3 purchases in the last 10 minutes",
    ),
    Rule(
        name="failed_logins",
        expression="has(features.failed_logins_1h) && features.failed_logins_1h > 2.5",
        action="review",
        note="3 or more failed logins in the last hour",
    ),
    Rule(
        name="password_change_new_device",
        expression=(
            "has(features.minutes_since_password_change)"
            " && features.minutes_since_password_change < 60.0"
            " && has(features.new_device) && features.new_device > 0.5"
        ),
        action="review",
        note="password changed less than an hour ago and a new device",
    ),
    Rule(
        name="cards_on_device",
        expression="has(features.cards_on_device) && features.cards_on_device > 2.5",
        action="review",
        note="3 or more distinct cards used by the user on this device",
    ),
    Rule(
        name="big_amount_new_card",
        expression=(
            "has(features.amount) && features.amount > 1000.0"
            " && has(features.new_card) && features.new_card > 0.5"
        ),
        action="review",
        note="amount over 1,000 on a card new to the user",
    ),
)
DEFAULT_RULES = tuple(
    r.model_copy(update={"owner": OWNER, "mode": "shadow"}) for r in DEFAULT_RULES
)


def default_rule_set() -> RuleSet:
    return RuleSet(version=1, rules=DEFAULT_RULES)
