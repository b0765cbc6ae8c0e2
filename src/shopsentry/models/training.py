"""Train the fraud model, judge it on the latest week, register it, gate its promotion.

One call, :func:`train_and_register`, is what both ``shopsentry train`` and the weekly
retraining job run:

1. build the labelled set (warehouse ML_FEATURES or a history dir) up to ``as_of``;
2. split by time: train on the earlier days, hold out the latest
   ``model.validation_days`` days;
3. fit XGBoost (``hist``) on labels *known at* ``as_of``, leaving out the rows younger
   than ``label_maturity_days`` (their fraud is mostly not charged back yet, and as
   negatives it would teach the trees that fraud looks legitimate); the class
   imbalance is handled by ``scale_pos_weight = sqrt(negatives / positives)``;
   early-stopped on the most recent slice of those rows (never on the held-out week);
4. calibrate on that slice: a Platt fit that also estimates the share of fraud already
   labelled there (see :func:`platt_incomplete`), folded into the trees' leaves (see
   :func:`fold_calibration`), so the saved model's probability means "chance of fraud" and the
   detector's 0.7 is a real operating point rather than an artefact of class weights
   and late labels;
5. score the model, the rules baseline and the current champion on the held-out week
   with the *eventual* truth, and write the report and the model card;
6. log everything to MLflow, register a version and let the promotion gate decide
   between ``champion`` and ``challenger``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.errors import TrainingDataError
from shopsentry.models.dataset import (
    Progress,
    TrainingSet,
    build_training_set,
    time_split,
    to_datetime64,
)
from shopsentry.models.evaluation import EvalWindow, evaluate

if TYPE_CHECKING:
    from shopsentry.config import ModelOpsSettings, ModelSettings, Settings
    from shopsentry.models.registry import RegistryConfig

logger = logging.getLogger(__name__)

MIN_KNOWN_FRAUD = 10


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """What a training run needs: the model settings (threads, validation window), the
    drift reference's settings, the registry (with the gate's operating point) and the
    warehouse file the ML features come from."""

    model: ModelSettings
    modelops: ModelOpsSettings
    registry: RegistryConfig
    warehouse: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingConfig:
        from shopsentry.models.registry import RegistryConfig

        return cls(
            model=settings.model,
            modelops=settings.modelops,
            registry=RegistryConfig.from_settings(settings),
            warehouse=settings.warehouse_path,
        )


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters; the defaults suit ~10^5-10^6 purchases at ~1% fraud."""

    n_estimators: int = 400
    max_depth: int = 6
    learning_rate: float = 0.08
    subsample: float = 0.85
    colsample_bytree: float = 0.85
    min_child_weight: float = 2.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 40
    calibration_fraction: float = 0.15
    # Chargebacks take weeks: rows younger than this at training time have labels too
    # incomplete to learn from; they are left out of the fit and the calibration.
    label_maturity_days: float = 10.0
    # Estimate the share of fraud labelled by training time and calibrate to all fraud.
    label_completeness: bool = True
    calibrate: bool = True
    nthread: int = 2
    seed: int = 17


@dataclass(frozen=True)
class FitResult:
    raw: bytes  # the calibrated XGBoost JSON model
    best_iteration: int
    scale_pos_weight: float
    calibration: dict[str, float]
    rows_fit: int
    rows_calibration: int
    rows_immature_dropped: int = 0
    calibration_window: tuple[str, str] | None = None


@dataclass
class TrainResult:
    """What the retraining job and the CLI need to know about one run."""

    version: str | None
    promoted: bool
    reason: str
    metrics: dict[str, float]
    report: dict[str, Any] = field(repr=False, default_factory=dict)
    model_dir: Path | None = None


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


def _calibration_mask(
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


def fit(
    train: TrainingSet, as_of: datetime, params: TrainParams, progress: Progress | None = None
) -> FitResult:
    """Fit on labels known at ``as_of``; early-stop and calibrate on the latest slice."""
    import xgboost as xgb

    y = train.known_labels(as_of)
    if int(y.sum()) < MIN_KNOWN_FRAUD:
        raise TrainingDataError(
            f"only {int(y.sum())} fraud labels known at {as_of:%Y-%m-%d %H:%M}"
            " in the training window",
            hint=f"need at least {MIN_KNOWN_FRAUD}: use a longer history or a later --as-of",
        )
    # Rows younger than the label maturity carry mostly-unlabelled fraud: as negatives
    # they teach the trees that fraud looks legitimate. Leave them out when enough
    # older rows remain.
    mature = train.occurred_at <= to_datetime64(as_of - timedelta(days=params.label_maturity_days))
    dropped = 0
    if int(y[mature].sum()) >= 4 * MIN_KNOWN_FRAUD:
        dropped = int((~mature).sum())
        train, y = train.subset(mature), y[mature]
    elif (~mature).any():
        logger.warning("too few mature labels; training on rows younger than the label maturity")
    cal = _calibration_mask(train, params.calibration_fraction, as_of, params.label_maturity_days)
    if int(y[cal].sum()) < MIN_KNOWN_FRAUD or int(y[~cal].sum()) < MIN_KNOWN_FRAUD:
        logger.warning(
            "too little known fraud to hold out a calibration slice;"
            " training on all rows uncalibrated"
        )
        cal = np.zeros(len(train), bool)
    fit_rows = ~cal
    positives = float(y[fit_rows].sum())
    negatives = float(fit_rows.sum() - positives)
    spw = float(np.clip(math.sqrt(negatives / max(positives, 1.0)), 1.0, 100.0))
    booster_params = {
        "objective": "binary:logistic",
        "eval_metric": ["aucpr", "logloss"],
        "tree_method": "hist",
        "max_depth": params.max_depth,
        "learning_rate": params.learning_rate,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "min_child_weight": params.min_child_weight,
        "reg_lambda": params.reg_lambda,
        "scale_pos_weight": spw,
        "nthread": params.nthread,
        "seed": params.seed,
    }
    names = list(train.feature_names)
    dfit = xgb.DMatrix(
        train.X[fit_rows],
        label=y[fit_rows],
        feature_names=names,
        missing=np.nan,
        nthread=params.nthread,
    )
    evals = []
    dcal = None
    if cal.any():
        dcal = xgb.DMatrix(
            train.X[cal], label=y[cal], feature_names=names, missing=np.nan, nthread=params.nthread
        )
        evals = [(dcal, "calibration")]

    class _Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if progress is not None:
                progress("training", epoch + 1, params.n_estimators)
            return False

    booster = xgb.train(
        booster_params,
        dfit,
        num_boost_round=params.n_estimators,
        evals=evals,
        early_stopping_rounds=params.early_stopping_rounds if evals else None,
        callbacks=[_Progress()],
        verbose_eval=False,
    )
    best = (
        int(getattr(booster, "best_iteration", params.n_estimators - 1))
        if evals
        else params.n_estimators - 1
    )
    booster = booster[: best + 1]
    booster.set_param({"nthread": 1})
    raw = bytes(booster.save_raw("json"))
    calibration: dict[str, float] = {"a": 1.0, "b": 0.0, "applied": 0.0}
    if params.calibrate and dcal is not None:
        margin = booster.predict(dcal, output_margin=True).astype(np.float64)
        if params.label_completeness:
            shares = label_completeness(train, as_of)[cal]
            a, b = platt_incomplete(margin, y[cal], shares)
            completeness = float(shares.mean())
        else:
            (a, b), completeness = platt(margin, y[cal]), 1.0
        if a > 0 and math.isfinite(a) and math.isfinite(b):
            raw = fold_calibration(raw, a, b)
            calibration = {"a": a, "b": b, "label_completeness": completeness, "applied": 1.0}
            check = xgb.Booster(model_file=bytearray(raw)).predict(dcal, output_margin=True)
            want = a * margin + b
            drift = float(np.max(np.abs(check - want)))
            # float32 leaves: the error grows with the margin's size (confident models)
            if drift > 1e-3 * max(1.0, float(np.max(np.abs(want)))):
                raise TrainingDataError(
                    f"calibration fold drifted by {drift:.2e}", hint="retrain with calibrate=False"
                )
        else:
            logger.warning("calibration fit was degenerate (a=%.3f); keeping the raw model", a)
    logger.info("trained %d trees (spw %.1f), calibration %s", best + 1, spw, calibration)
    return FitResult(
        raw=raw,
        best_iteration=best,
        scale_pos_weight=spw,
        calibration=calibration,
        rows_fit=int(fit_rows.sum()),
        rows_calibration=int(cal.sum()),
        rows_immature_dropped=dropped,
        calibration_window=(
            (
                str(train.occurred_at[cal].min().astype("datetime64[s]")),
                str(train.occurred_at[cal].max().astype("datetime64[s]")),
            )
            if cal.any()
            else None
        ),
    )


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


def train_and_register(
    config: TrainingConfig,
    *,
    history: Path | None = None,
    use_warehouse: bool | None = None,
    as_of: datetime | None = None,
    params: TrainParams | None = None,
    progress: Progress | None = None,
    keep_challenger: str | None = None,
) -> TrainResult:
    """Build data, train, evaluate, register, gate. The weekly retraining job calls this
    (``keep_challenger``: see :func:`~shopsentry.models.registry.register_and_gate`).

    ``use_warehouse=None`` takes the warehouse's ML_FEATURES layer when it exists, else
    ``history``; ``as_of`` (default: the latest event) is the training time.
    """
    data = build_training_set(
        config.warehouse,
        history=history,
        use_warehouse=use_warehouse,
        as_of=as_of,
        progress=progress,
    )
    return train_on(
        config, data, as_of=as_of, params=params, progress=progress, keep_challenger=keep_challenger
    )


def train_on(
    config: TrainingConfig,
    data: TrainingSet,
    *,
    as_of: datetime | None = None,
    params: TrainParams | None = None,
    progress: Progress | None = None,
    keep_challenger: str | None = None,
) -> TrainResult:
    """Everything after the data set is built: split, fit, evaluate, register, gate."""
    from shopsentry.models import registry
    from shopsentry.models.drift_reference import build_reference
    from shopsentry.models.scorer import build_scorer

    params = params or TrainParams(nthread=config.model.nthread)
    as_of = as_of or data.end
    split = time_split(data, config.model.validation_days)
    logger.info(
        "data %s: %d purchases, train %d before %s, validate %d",
        data.source, len(data), len(split.train), split.cutoff.isoformat(), len(split.valid),
    )  # fmt: skip
    fitted = fit(split.train, as_of, params, progress)
    if progress is not None:
        progress("evaluating", 0, None)
    scorer = build_scorer(
        fitted.raw,
        version="candidate",
        cache_dir=config.registry.files.kernel_cache,
        expected_features=data.feature_names,
    )
    score = scorer.predict(split.valid.X)
    report = build_report(
        config, data, split.train, split.valid, split.cutoff, as_of, fitted, params, score
    )
    report["drift_reference"] = build_reference(config.modelops, data, fitted.raw, scorer)
    if progress is not None:
        progress("registering", 0, None)
    outcome = registry.register_and_gate(
        config.registry, fitted.raw, report, split.valid, keep_challenger=keep_challenger
    )
    return TrainResult(
        version=outcome.version,
        promoted=outcome.promoted,
        reason=outcome.reason,
        metrics={k: float(v) for k, v in report["model"].items() if isinstance(v, int | float)},
        report=report,
        model_dir=outcome.model_dir,
    )
