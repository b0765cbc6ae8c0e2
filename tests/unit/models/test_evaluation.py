"""The report's metrics on hand-made cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from shopsentry.models.baseline import RULES, describe_rules, rules_fired, rules_score
from shopsentry.models.evaluation import (
    EvalWindow,
    evaluate,
    precision_at_k_per_day,
    recall_at_fpr,
    recall_by_scenario,
)


def test_recall_at_fpr_respects_the_budget():
    neg = np.linspace(0.0, 0.99, 100)  # 100 legit purchases
    pos = np.array([0.995, 0.99, 0.97, 0.955, 0.5, 0.1])
    y = np.r_[np.zeros(100, bool), np.ones(6, bool)]
    score = np.r_[neg, pos]
    recall, threshold, fpr = recall_at_fpr(y, score, 0.05)
    flagged = score >= threshold
    assert (flagged & ~y).sum() <= 5 and fpr <= 0.05
    assert recall == pytest.approx(4 / 6)


def test_precision_at_k_is_per_day():
    days = np.array(
        [
            "2026-11-01T10:00",
            "2026-11-01T11:00",
            "2026-11-01T12:00",
            "2026-11-02T09:00",
            "2026-11-02T10:00",
        ],
        dtype="datetime64[ns]",
    )
    y = np.array([True, False, False, False, True])
    score = np.array([0.9, 0.8, 0.1, 0.95, 0.2])
    assert precision_at_k_per_day(y, score, days, k=1) == {"2026-11-01": 1.0, "2026-11-02": 0.0}
    assert precision_at_k_per_day(y, score, days, k=2) == {"2026-11-01": 0.5, "2026-11-02": 0.5}


def test_recall_by_scenario_counts_fraud_rows_only():
    y = np.array([True, True, True, False])
    flagged = np.array([True, False, True, True])
    scenario = np.array(["a", "a", "b", "travel"], dtype=object)
    assert recall_by_scenario(y, flagged, scenario) == {
        "a": {"count": 2, "recall": 0.5},
        "b": {"count": 1, "recall": 1.0},
    }


def test_evaluate_perfect_and_useless_scores():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.05
    when = np.datetime64("2026-11-01") + (np.arange(2000) * 600).astype("timedelta64[s]")
    window = EvalWindow(y=y, occurred_at=when, scenario=np.where(y, "x", None).astype(object))
    perfect = evaluate(window, y.astype(float), threshold=0.7, fpr_budget=0.05, review_budget=10)
    assert perfect["pr_auc"] == pytest.approx(1.0) and perfect["recall_at_fpr_budget"] == 1.0
    assert perfect["precision_at_threshold"] == 1.0 and perfect["fpr_at_threshold"] == 0.0
    assert perfect["recall_by_scenario_at_threshold"]["x"]["recall"] == 1.0
    useless = evaluate(window, np.full(2000, 0.5), threshold=0.7, fpr_budget=0.05, review_budget=10)
    assert useless["roc_auc"] == pytest.approx(0.5)
    assert useless["recall_at_threshold"] == 0.0 and useless["recall_at_fpr_budget"] == 0.0
    curve = perfect["curve"]
    assert curve["recall"][0] == 1.0 and curve["fpr"][0] == 1.0


NAMES = (
    "amount",
    "amount_ratio",
    "purchase_count",
    "new_device",
    "new_country",
    "purchases_10m",
)


def test_rules_fire_on_the_named_features_and_skip_missing_ones():
    X = np.array(
        [
            [50, 1.0, 10, 0, 0, 1],  # ordinary
            [900, 9.0, 10, 0, 0, 1],  # 9x the average
            [900, 9.0, 0, 0, 0, 1],  # first purchase: no average to compare to
            [50, 1.0, 10, 1, 1, 5],  # new device+country and a burst
            [50, np.nan, np.nan, np.nan, np.nan, np.nan],  # unknowns never fire
        ],
        dtype=np.float32,
    )
    assert rules_fired(X, NAMES).tolist() == [0, 1, 0, 2, 0]
    assert rules_score(X, NAMES).tolist() == [0.0, 0.5, 0.0, 0.75, 0.0]
    text = describe_rules(NAMES)
    assert sum(t.startswith("(skipped") for t in text) == len(RULES) - 3


def test_card_precision_ranks_cards_by_their_riskiest_purchase() -> None:
    from shopsentry.models.evaluation import card_precision_at_k_per_day

    day = np.datetime64("2026-03-02T10:00")
    occurred = np.array([day] * 5 + [day + np.timedelta64(1, "D")], dtype="datetime64[ns]")
    card = np.array(["a", "a", "b", "c", None, "a"], dtype=object)
    y = np.array([False, True, False, False, True, False])
    score = np.array([0.1, 0.9, 0.8, 0.2, 0.99, 0.5])
    got = card_precision_at_k_per_day(y, score, occurred, card, k=2)
    # day 1: a (0.9, compromised) and b (0.8, clean); the card-less purchase is left out
    assert got == {"2026-03-02": 0.5, "2026-03-03": 0.0}
