"""Calibration of the fraud model's probability when labels arrive late.

Chargebacks take weeks, so at training time the latest rows carry only part of their
fraud. The pieces here turn the trees' margin into a probability that means "chance of
fraud" rather than "chance a chargeback has arrived by now": the slice to calibrate on
(:func:`calibration_mask`, old enough for its labels to have come in), the share of each
row's fraud already labelled (:func:`label_completeness`), the Platt fit that accounts
for it (:func:`platt_incomplete`) and the rewrite of the trees that carries the fit
inside the saved model (:func:`fold_calibration`). They are plain functions over arrays
and model JSON; :func:`~shopsentry.models.training.fit` uses them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from shopsentry.models.dataset import TrainingSet, to_datetime64


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|
    return out


def platt(
    margin: NDArray[np.float64], y: NDArray[np.bool_], iterations: int = 100
) -> tuple[float, float]:
    """Fit ``p = sigmoid(a * margin + b)`` by damped Newton steps on the log loss.

    Uses Platt's smoothed targets so a perfectly separable slice does not push ``a``
    to infinity; each step is halved until the loss goes down (plain Newton diverges
    from a poor start on a very imbalanced slice).
    """
    positives = float(y.sum())
    negatives = float(y.size - positives)
    target = np.where(y, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(a: float, b: float) -> float:
        z = a * margin + b
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = _sigmoid(a * margin + b)
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - target) * margin), np.sum(p - target)])
        h = np.array(
            [[np.sum(w * margin * margin), np.sum(w * margin)], [np.sum(w * margin), np.sum(w)]]
        )
        step = np.linalg.solve(h + np.eye(2) * 1e-9, g)
        scale = 1.0
        while scale > 1e-6:
            candidate = loss(a - scale * float(step[0]), b - scale * float(step[1]))
            if candidate <= current:
                break
            scale /= 2
        else:
            break
        a, b = a - scale * float(step[0]), b - scale * float(step[1])
        improvement, current = current - candidate, candidate
        if improvement < 1e-10 * max(abs(current), 1.0):
            break
    return a, b


def label_completeness(data: TrainingSet, as_of: datetime) -> NDArray[np.float64]:
    """Per row, the estimated share of fraud of its age already labelled at ``as_of``.

    Chain ladder on the label delays, as insurers estimate claims not yet reported:
    for each day of delay ``d``, the development factor is how much the known fraud of
    cohorts old enough to show it grows from delay ``<= d`` to ``<= d + 1``; a row of
    age ``A`` is complete to ``1 / prod(factors from A on)``. Delays longer than the
    history cannot be seen, so this is an upper bound: it still corrects most of the
    shortfall of recent rows instead of pretending their labels are final.
    """
    cutoff = to_datetime64(as_of)
    day = np.timedelta64(86400, "s")
    age = (cutoff - data.occurred_at) / day
    known = data.known_labels(as_of)
    delay = (data.label_known_at[known] - data.occurred_at[known]) / day
    known_age = age[known]
    horizon = int(np.floor(age.max())) if age.size else 0
    factors = np.ones(max(horizon, 1))
    for d in range(horizon):
        cohort = known_age >= d + 1
        before = int(np.sum(cohort & (delay <= d)))
        after = int(np.sum(cohort & (delay <= d + 1)))
        factors[d] = after / before if before else 1.0
    # completeness at age A: 1 / product of the factors from floor(A) to the horizon
    tail = np.cumprod(factors[::-1])[::-1]  # tail[d] = prod(factors[d:])
    index = np.clip(np.floor(age).astype(np.int64), 0, tail.size)
    growth = np.where(index < tail.size, tail[np.minimum(index, tail.size - 1)], 1.0)
    out: NDArray[np.float64] = np.clip(1.0 / growth, 0.05, 1.0)
    return out


def platt_incomplete(
    margin: NDArray[np.float64], y_known: NDArray[np.bool_], completeness: NDArray[np.float64]
) -> tuple[float, float]:
    """Platt scaling when only a known share of each row's fraud is labelled yet.

    Fits ``P(label known) = completeness * sigmoid(a * margin + b)`` by maximum
    likelihood, so ``sigmoid(a * margin + b)`` estimates the probability of fraud
    itself rather than of a chargeback having arrived by training time.
    """
    from scipy.optimize import minimize

    a0, b0 = platt(margin, y_known)
    if np.all(completeness >= 0.999):
        return a0, b0
    yk = y_known.astype(np.float64)

    def nll(theta: NDArray[np.float64]) -> float:
        p = np.clip(completeness * _sigmoid(theta[0] * margin + theta[1]), 1e-12, 1 - 1e-12)
        return float(-np.sum(yk * np.log(p) + (1 - yk) * np.log1p(-p)))

    best = minimize(
        nll, np.array([a0, b0]), method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-7}
    )
    return float(best.x[0]), float(best.x[1])


def fold_calibration(raw: bytes, a: float, b: float) -> bytes:
    """Rewrite an XGBoost JSON model so its margin becomes ``a * margin + b``.

    Every leaf is scaled by ``a``; the intercept ``a * m0 + b`` (``m0`` being the margin
    XGBoost derives from the old base score) is added to every leaf of the first tree,
    which each row reaches exactly once, and the base score is set to 0.5 (margin
    exactly 0). The saved model is a plain XGBoost model whose probabilities are
    calibrated, so the detector, MLflow's pyfunc and ``inplace_predict`` all agree.

    The intercept does not go into ``base_score``: XGBoost keeps that as a float32
    probability, and a calibration for incomplete labels often has a large intercept
    (``b`` ~ 14 on a small history), which puts the base score within 1e-3 of 1 where
    float32 keeps only a few digits of ``1 - p``: the model then started ~7e-5 in margin
    away from the calibration it was meant to carry, and past a margin of ~17 the base
    score would round to exactly 1.0 (an infinite margin). A leaf holds the intercept
    to float32's relative precision instead. Leaves are written as float32 values, so
    XGBoost and :func:`~shopsentry.models.forest.parse_model` read the same numbers.
    """
    from shopsentry.models.forest import base_margin

    doc = json.loads(raw)
    learner = doc["learner"]
    m0 = base_margin(learner)
    intercept = a * m0 + b
    learner["learner_model_param"]["base_score"] = "[5E-1]"

    def f32(value: float) -> float:
        return float(np.float32(value))

    for index, tree in enumerate(learner["gradient_booster"]["model"]["trees"]):
        shift = intercept if index == 0 else 0.0
        leaf = [c < 0 for c in tree["left_children"]]
        tree["split_conditions"] = [
            f32(v * a + shift) if is_leaf else v
            for v, is_leaf in zip(tree["split_conditions"], leaf, strict=True)
        ]
        tree["base_weights"] = [
            f32(v * a + shift) if is_leaf else f32(v * a)
            for v, is_leaf in zip(tree["base_weights"], leaf, strict=True)
        ]
    return json.dumps(doc).encode()


def calibration_mask(
    data: TrainingSet, fraction: float, as_of: datetime, maturity_days: float
) -> NDArray[np.bool_]:
    """A held-out slice of the training window whose labels have had time to arrive.

    The latest ``fraction`` of the rows that are at least ``maturity_days`` old at
    ``as_of``. Calibrating on the very latest rows instead would teach the model that
    fraud is rare exactly where chargebacks simply have not come in yet, and scale every
    probability down. The slice sits inside the training window (trees are fit on both
    sides of it), so it is still out of sample.
    """
    mature_before = to_datetime64(as_of - timedelta(days=maturity_days))
    candidates = np.flatnonzero(data.occurred_at <= mature_before)
    candidates = candidates[np.argsort(data.occurred_at[candidates], kind="stable")]
    n_cal = min(int(len(data) * fraction), candidates.size)
    mask = np.zeros(len(data), bool)
    if n_cal:
        mask[candidates[-n_cal:]] = True
    return mask
