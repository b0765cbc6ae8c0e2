"""The rules a fraud team writes by hand before it has a model: the bar to beat.

Each rule is one readable condition on the same features the model sees (so the
comparison is about the learning, not about the inputs). A purchase is flagged when any
rule fires; the score ``1 - 0.5 ** fired`` (0.5 for one rule, 0.75 for two, ...) ranks
purchases that break several rules first, which gives the rules a PR curve too.

A rule whose features this build does not compute is skipped and reported as such,
never silently treated as "did not fire".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

# Flag when at least one rule fires.
RULES_THRESHOLD = 0.5

Column = Callable[[str], NDArray[np.float32]]


@dataclass(frozen=True)
class Rule:
    text: str
    features: tuple[str, ...]
    fires: Callable[[Column], NDArray[np.bool_]]


def _gt(values: NDArray[np.float32], limit: float) -> NDArray[np.bool_]:
    """``values > limit`` with missing (NaN) as "no": rules do not fire on unknowns."""
    with np.errstate(invalid="ignore"):
        out: NDArray[np.bool_] = np.nan_to_num(values, nan=-np.inf) > limit
    return out


def _flag(values: NDArray[np.float32]) -> NDArray[np.bool_]:
    return _gt(values, 0.5)


RULES: tuple[Rule, ...] = (
    Rule(
        "amount more than 5x the user's average purchase (users with history)",
        ("amount_ratio", "purchase_count"),
        lambda c: _gt(c("amount_ratio"), 5.0) & _gt(c("purchase_count"), 0.5),
    ),
    Rule(
        "new device and new country for the user",
        ("new_device", "new_country"),
        lambda c: _flag(c("new_device")) & _flag(c("new_country")),
    ),
    Rule(
        "more than 3 purchases in the last 10 minutes",
        ("purchases_10m",),
        lambda c: _gt(c("purchases_10m"), 3),
    ),
    Rule(
        "3 or more failed logins in the last hour",
        ("failed_logins_1h",),
        lambda c: _gt(c("failed_logins_1h"), 2.5),
    ),
    Rule(
        "password changed less than an hour ago and a new device",
        ("minutes_since_password_change", "new_device"),
        lambda c: (
            (np.nan_to_num(c("minutes_since_password_change"), nan=np.inf) < 60)
            & _flag(c("new_device"))
        ),
    ),
    Rule(
        "3 or more distinct cards used by the user on this device",
        ("cards_on_device",),
        lambda c: _gt(c("cards_on_device"), 2.5),
    ),
    Rule(
        "amount over 1,000 on a card new to the user",
        ("amount", "new_card"),
        lambda c: _gt(c("amount"), 1000.0) & _flag(c("new_card")),
    ),
)


def active_rules(feature_names: tuple[str, ...]) -> list[Rule]:
    return [r for r in RULES if all(f in feature_names for f in r.features)]


def describe_rules(feature_names: tuple[str, ...]) -> list[str]:
    """The rules as a person reads them, noting any this build cannot evaluate."""
    active = active_rules(feature_names)
    out = [r.text for r in active]
    out += [f"(skipped: {r.text}; features missing)" for r in RULES if r not in active]
    return out


def rules_fired(X: NDArray[np.float32], feature_names: tuple[str, ...]) -> NDArray[np.int32]:
    """How many rules fire per row."""
    index = {name: i for i, name in enumerate(feature_names)}

    def column(name: str) -> NDArray[np.float32]:
        return X[:, index[name]]

    fired = np.zeros(X.shape[0], np.int32)
    active = active_rules(feature_names)
    if len(active) < len(RULES):
        skipped = len(RULES) - len(active)
        logger.warning(
            "rules baseline: %d of %d rules skipped (features missing)", skipped, len(RULES)
        )
    for rule in active:
        fired += rule.fires(column).astype(np.int32)
    return fired


def rules_score(X: NDArray[np.float32], feature_names: tuple[str, ...]) -> NDArray[np.float64]:
    """``1 - 0.5 ** fired``: 0 when no rule fires, >= 0.5 when any does."""
    score: NDArray[np.float64] = 1.0 - 0.5 ** rules_fired(X, feature_names).astype(np.float64)
    return score
