"""The training report: what one run learned from, how it was fit, and how the new
model and the rules baseline score on the held-out days.

:func:`build_report` is the JSON-ready record that the model card, the MLflow run (as
params and metrics), the CLI table and the promotion gate all read, so each of them shows
the same numbers. The held-out days are judged with the *eventual* labels (including
those that arrived after ``as_of``), the truth a model is eventually held to.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.models.evaluation import EvalWindow, evaluate

if TYPE_CHECKING:
    from shopsentry.models.dataset import TrainingSet
    from shopsentry.models.training import FitResult, TrainingConfig, TrainParams


def importance_by_family(raw: bytes, feature_names: tuple[str, ...]) -> dict[str, float]:
    """Each feature family's share of the model's total gain (the card's "what the
    model leans on"): amount, velocity, novelty, behaviour, context, entity."""
    import xgboost as xgb

    from shopsentry.features import FEATURE_FAMILIES

    gain = xgb.Booster(model_file=bytearray(raw)).get_score(importance_type="total_gain")
    totals: dict[str, float] = {}
    for name in feature_names:
        family = FEATURE_FAMILIES.get(name, "other")
        value = gain.get(name, 0.0)
        totals[family] = totals.get(family, 0.0) + float(
            sum(value) if isinstance(value, list) else value
        )
    whole = sum(totals.values())
    return {family: (value / whole if whole else 0.0) for family, value in totals.items()}


def _window(data: TrainingSet) -> EvalWindow:
    return EvalWindow(
        y=data.is_fraud, occurred_at=data.occurred_at, scenario=data.scenario, card=data.card_ids
    )


def build_report(
    config: TrainingConfig,
    data: TrainingSet,
    train: TrainingSet,
    valid: TrainingSet,
    cutoff: datetime,
    as_of: datetime,
    fitted: FitResult,
    params: TrainParams,
    model_score: NDArray[np.float64],
) -> dict[str, Any]:
    """Everything the card, MLflow and the CLI table show, as JSON-ready data."""
    from shopsentry.models.baseline import RULES_THRESHOLD, describe_rules, rules_score

    window = _window(valid)
    budgets = config.registry
    model_metrics = evaluate(
        window,
        model_score,
        threshold=budgets.threshold,
        fpr_budget=budgets.fpr_budget,
        review_budget=budgets.review_budget_per_day,
    )
    baseline = rules_score(valid.X, valid.feature_names)
    baseline_metrics = evaluate(
        window,
        baseline,
        threshold=RULES_THRESHOLD,
        fpr_budget=budgets.fpr_budget,
        review_budget=budgets.review_budget_per_day,
    )
    known = train.known_labels(as_of)
    return {
        "data": {
            "source": data.source,
            "start": data.start.isoformat(),
            "validation_start": cutoff.isoformat(),
            "end": data.end.isoformat(),
            "as_of": as_of.isoformat(),
            "rows": len(data),
            "train_rows": len(train),
            "train_fraud_known_at_as_of": int(known.sum()),
            "train_fraud_not_yet_known": int((train.is_fraud & ~known).sum()),
            "validation_rows": len(valid),
            "validation_fraud": int(valid.is_fraud.sum()),
            "validation_truth": "eventual labels (including those known after as_of)",
        },
        "features": list(data.feature_names),
        "importance_by_family": importance_by_family(fitted.raw, data.feature_names),
        "params": asdict(params),
        "fit": {
            "trees": fitted.best_iteration + 1,
            "scale_pos_weight": fitted.scale_pos_weight,
            "calibration": fitted.calibration,
            "rows_fit": fitted.rows_fit,
            "rows_calibration": fitted.rows_calibration,
            "calibration_window": fitted.calibration_window,
            "rows_immature_dropped": fitted.rows_immature_dropped,
            "label_maturity_days": params.label_maturity_days,
        },
        "model": model_metrics,
        "baseline": {"rules": describe_rules(valid.feature_names), **baseline_metrics},
    }
