"""How a fraud score is judged: the numbers an analyst team and a risk owner ask for.

* ranking quality: ROC-AUC and PR-AUC (average precision; the one that matters when
  fraud is ~1% of purchases);
* the deployed operating point: precision, recall and false-positive rate at the
  detector's threshold (0.7 by default), and how many purchases that flags per day;
* the design's target: recall at a 5% false-positive budget (and the threshold that
  achieves it);
* the analysts' reality: precision@k per day, k being the daily review budget, per
  purchase and per card (the share of compromised cards among each day's k riskiest);
* where the model is blind: recall per fraud scenario, at the threshold and at the
  budget.

Everything is computed from arrays so the same function scores the model, the previous
champion and the rules baseline on the same held-out window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

CURVE_POINTS = 101


@dataclass(frozen=True)
class EvalWindow:
    """The held-out rows a score is judged on (eventual truth, not labels known then)."""

    y: NDArray[np.bool_]
    occurred_at: NDArray[np.datetime64]
    scenario: NDArray[np.object_]
    card: NDArray[np.object_] | None = None  # each purchase's card (None: not known)

    def __post_init__(self) -> None:
        if not (len(self.y) == len(self.occurred_at) == len(self.scenario)):
            raise ValueError("evaluation arrays differ in length")


def _at(y: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> dict[str, float]:
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    positives = int(np.sum(y))
    negatives = int(y.size - positives)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / positives if positives else 0.0,
        "fpr": fp / negatives if negatives else 0.0,
        "flagged": int(tp + fp),
    }


def recall_at_fpr(
    y: NDArray[np.bool_], score: NDArray[np.float64], budget: float
) -> tuple[float, float, float]:
    """The best recall whose false-positive rate stays within ``budget``.

    Returns ``(recall, threshold, fpr)``; rows with ``score >= threshold`` are flagged.
    Ties are never split: if flagging a tied group would exceed the budget, none of it
    is flagged.
    """
    from sklearn.metrics import roc_curve

    if y.all() or not y.any():
        return 0.0, 1.0, 0.0
    fpr, tpr, thresholds = roc_curve(y, score)
    ok = np.flatnonzero(fpr <= budget)
    best = ok[np.argmax(tpr[ok])]
    return float(tpr[best]), float(min(thresholds[best], 1.0)), float(fpr[best])


def precision_at_k_per_day(
    y: NDArray[np.bool_], score: NDArray[np.float64], occurred_at: NDArray[np.datetime64], k: int
) -> dict[str, float]:
    """Share of fraud among each day's ``k`` highest scores (the analysts' queue)."""
    days = occurred_at.astype("datetime64[D]")
    out: dict[str, float] = {}
    for day in np.unique(days):
        idx = np.flatnonzero(days == day)
        top = idx[np.argsort(-score[idx], kind="stable")[:k]]
        out[str(day)] = float(np.mean(y[top])) if top.size else 0.0
    return out


def card_precision_at_k_per_day(
    y: NDArray[np.bool_],
    score: NDArray[np.float64],
    occurred_at: NDArray[np.datetime64],
    card: NDArray[np.object_],
    k: int,
) -> dict[str, float]:
    """Share of compromised cards among each day's ``k`` riskiest cards: a card's risk
    that day is its riskiest purchase's score, and it is compromised if any of its
    purchases that day is fraud (purchases without a card are left out)."""
    days = occurred_at.astype("datetime64[D]")
    has_card = np.array([c is not None for c in card], dtype=bool)
    out: dict[str, float] = {}
    for day in np.unique(days):
        idx = np.flatnonzero((days == day) & has_card)
        risk: dict[object, float] = {}
        bad: dict[object, bool] = {}
        for i in idx.tolist():
            c = card[i]
            if score[i] > risk.get(c, -1.0):
                risk[c] = float(score[i])
            bad[c] = bad.get(c, False) or bool(y[i])
        ranked = sorted(risk, key=lambda c: -risk[c])[:k]
        out[str(day)] = float(np.mean([bad[c] for c in ranked])) if ranked else 0.0
    return out


def recall_by_scenario(
    y: NDArray[np.bool_], flagged: NDArray[np.bool_], scenario: NDArray[np.object_]
) -> dict[str, dict[str, float]]:
    """Recall of each fraud scenario (fraud rows only) and how many rows it has."""
    out: dict[str, dict[str, float]] = {}
    labels = np.array(
        ["(unknown)" if s is None or s == "" else str(s) for s in scenario], dtype=object
    )
    for name in sorted(set(labels[y].tolist())):
        rows = y & (labels == name)
        out[name] = {"count": int(rows.sum()), "recall": float(flagged[rows].mean())}
    return out


def threshold_curve(
    y: NDArray[np.bool_], score: NDArray[np.float64], points: int = CURVE_POINTS
) -> dict[str, list[float]]:
    """Precision, recall and FPR at evenly spaced thresholds (for the model card plot)."""
    thresholds = np.linspace(0.0, 1.0, points)
    pos = np.sort(score[y])
    neg = np.sort(score[~y])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / max(pos.size, 1)
    fpr = fp / max(neg.size, 1)
    return {
        "threshold": thresholds.round(4).tolist(),
        "precision": precision.round(6).tolist(),
        "recall": recall.round(6).tolist(),
        "fpr": fpr.round(6).tolist(),
    }


def evaluate(
    window: EvalWindow,
    score: NDArray[np.float64],
    *,
    threshold: float,
    fpr_budget: float,
    review_budget: int,
    with_curve: bool = True,
) -> dict[str, Any]:
    """Every metric of the report for one score on one window, as plain JSON data."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = window.y.astype(bool)
    score = np.asarray(score, np.float64)
    if score.shape != y.shape:
        raise ValueError(f"score has shape {score.shape}, labels {y.shape}")
    both_classes = bool(y.any() and not y.all())
    flagged = score >= threshold
    at_threshold = _at(y, flagged)
    recall_budget, threshold_budget, fpr_at_budget = recall_at_fpr(y, score, fpr_budget)
    p_at_k = precision_at_k_per_day(y, score, window.occurred_at, review_budget)
    days = max(len(p_at_k), 1)
    report: dict[str, Any] = {
        "rows": int(y.size),
        "fraud": int(y.sum()),
        "fraud_rate": float(y.mean()) if y.size else 0.0,
        "days": len(p_at_k),
        "roc_auc": float(roc_auc_score(y, score)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if both_classes else float("nan"),
        "threshold": threshold,
        "precision_at_threshold": at_threshold["precision"],
        "recall_at_threshold": at_threshold["recall"],
        "fpr_at_threshold": at_threshold["fpr"],
        "flagged_per_day_at_threshold": at_threshold["flagged"] / days,
        "fpr_budget": fpr_budget,
        "recall_at_fpr_budget": recall_budget,
        "threshold_at_fpr_budget": threshold_budget,
        "fpr_at_budget_threshold": fpr_at_budget,
        "review_budget_per_day": review_budget,
        "precision_at_k_mean": float(np.mean(list(p_at_k.values()))) if p_at_k else 0.0,
        "precision_at_k_by_day": p_at_k,
        "recall_by_scenario_at_threshold": recall_by_scenario(y, flagged, window.scenario),
        "recall_by_scenario_at_fpr_budget": recall_by_scenario(
            y, score >= threshold_budget, window.scenario
        ),
    }
    if window.card is not None:
        cards = card_precision_at_k_per_day(
            y, score, window.occurred_at, window.card, review_budget
        )
        report["card_precision_at_k_by_day"] = cards
        report["card_precision_at_k_mean"] = float(np.mean(list(cards.values()))) if cards else 0.0
    if with_curve:
        report["curve"] = threshold_curve(y, score)
    return report


# The scalar metrics logged to MLflow and compared by the promotion gate.
KEY_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision_at_threshold",
    "recall_at_threshold",
    "fpr_at_threshold",
    "recall_at_fpr_budget",
    "threshold_at_fpr_budget",
    "precision_at_k_mean",
    "card_precision_at_k_mean",
)


def scalar_metrics(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{key}": float(report[key]) for key in KEY_METRICS if key in report}
