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
   labelled there (see :func:`~shopsentry.models.calibration.platt_incomplete`), folded
   into the trees' leaves (see :func:`~shopsentry.models.calibration.fold_calibration`),
   so the saved model's probability means "chance of fraud" and the detector's 0.7 is a
   real operating point rather than an artefact of class weights and late labels;
5. score the model, the rules baseline and the current champion on the held-out week
   with the *eventual* truth, and write the report
   (:mod:`~shopsentry.models.training_report`) and the model card;
6. log everything to MLflow, register a version and let the promotion gate decide
   between ``champion`` and ``challenger``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.errors import TrainingDataError
from shopsentry.models.calibration import (
    calibration_mask,
    fold_calibration,
    label_completeness,
    platt,
    platt_incomplete,
)
from shopsentry.models.dataset import (
    Progress,
    TrainingSet,
    build_training_set,
    time_split,
    to_datetime64,
)
from shopsentry.models.training_report import build_report

if TYPE_CHECKING:
    import xgboost as xgb

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


def fit(
    train: TrainingSet, as_of: datetime, params: TrainParams, progress: Progress | None = None
) -> FitResult:
    """Fit on labels known at ``as_of``; early-stop and calibrate on the latest slice."""
    y = train.known_labels(as_of)
    if int(y.sum()) < MIN_KNOWN_FRAUD:
        raise TrainingDataError(
            f"only {int(y.sum())} fraud labels known at {as_of:%Y-%m-%d %H:%M}"
            " in the training window",
            hint=f"need at least {MIN_KNOWN_FRAUD}: use a longer history or a later --as-of",
        )
    train, y, dropped = _mature_rows(train, y, as_of, params.label_maturity_days)
    cal = _calibration_slice(train, y, as_of, params)
    fit_rows = ~cal
    positives = float(y[fit_rows].sum())
    negatives = float(fit_rows.sum() - positives)
    spw = float(np.clip(math.sqrt(negatives / max(positives, 1.0)), 1.0, 100.0))
    booster, best, dcal = _boost(train, y, cal, spw, params, progress)
    raw = bytes(booster.save_raw("json"))
    calibration: dict[str, float] = {"a": 1.0, "b": 0.0, "applied": 0.0}
    if params.calibrate and dcal is not None:
        shares = label_completeness(train, as_of)[cal] if params.label_completeness else None
        raw, calibration = _calibrate(
            raw, booster.predict(dcal, output_margin=True), y[cal], shares, dcal
        )
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


def _mature_rows(
    train: TrainingSet, y: NDArray[np.bool_], as_of: datetime, maturity_days: float
) -> tuple[TrainingSet, NDArray[np.bool_], int]:
    """The rows to learn from, their known labels and how many young rows were left out.

    Rows younger than the label maturity carry mostly-unlabelled fraud: as negatives
    they teach the trees that fraud looks legitimate. Leave them out when enough older
    rows remain."""
    mature = train.occurred_at <= to_datetime64(as_of - timedelta(days=maturity_days))
    if int(y[mature].sum()) >= 4 * MIN_KNOWN_FRAUD:
        return train.subset(mature), y[mature], int((~mature).sum())
    if (~mature).any():
        logger.warning("too few mature labels; training on rows younger than the label maturity")
    return train, y, 0


def _calibration_slice(
    train: TrainingSet, y: NDArray[np.bool_], as_of: datetime, params: TrainParams
) -> NDArray[np.bool_]:
    """The rows held out to early-stop and calibrate on (see :func:`calibration_mask`);
    none when either side of the split would have too little known fraud."""
    cal = calibration_mask(train, params.calibration_fraction, as_of, params.label_maturity_days)
    if int(y[cal].sum()) < MIN_KNOWN_FRAUD or int(y[~cal].sum()) < MIN_KNOWN_FRAUD:
        logger.warning(
            "too little known fraud to hold out a calibration slice;"
            " training on all rows uncalibrated"
        )
        cal = np.zeros(len(train), bool)
    return cal


def _boost(
    train: TrainingSet,
    y: NDArray[np.bool_],
    cal: NDArray[np.bool_],
    spw: float,
    params: TrainParams,
    progress: Progress | None,
) -> tuple[xgb.Booster, int, xgb.DMatrix | None]:
    """XGBoost (``hist``) on the rows outside ``cal``, early-stopped on ``cal`` when it
    has rows. Returns the booster cut at its best iteration (set to score on one
    thread), that iteration and the calibration rows' matrix (None: no slice)."""
    import xgboost as xgb

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
    fit_rows = ~cal
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
    return booster, best, dcal


def _calibrate(
    raw: bytes,
    margin: NDArray[Any],
    y: NDArray[np.bool_],
    shares: NDArray[np.float64] | None,
    dcal: xgb.DMatrix,
) -> tuple[bytes, dict[str, float]]:
    """Fit the calibration on the slice's margins and labels and fold it into ``raw``.

    ``shares`` is each slice row's estimated label completeness (None: labels taken
    as final). Returns the model and the calibration to report; a degenerate fit
    keeps the raw model. The folded model is scored again on the slice: float32
    leaves may not drift from the intended margin beyond their precision."""
    import xgboost as xgb

    margin = margin.astype(np.float64)
    if shares is not None:
        a, b = platt_incomplete(margin, y, shares)
        completeness = float(shares.mean())
    else:
        (a, b), completeness = platt(margin, y), 1.0
    if not (a > 0 and math.isfinite(a) and math.isfinite(b)):
        logger.warning("calibration fit was degenerate (a=%.3f); keeping the raw model", a)
        return raw, {"a": 1.0, "b": 0.0, "applied": 0.0}
    raw = fold_calibration(raw, a, b)
    check = xgb.Booster(model_file=bytearray(raw)).predict(dcal, output_margin=True)
    want = a * margin + b
    drift = float(np.max(np.abs(check - want)))
    # float32 leaves: the error grows with the margin's size (confident models)
    if drift > 1e-3 * max(1.0, float(np.max(np.abs(want)))):
        raise TrainingDataError(
            f"calibration fold drifted by {drift:.2e}", hint="retrain with calibrate=False"
        )
    return raw, {"a": a, "b": b, "label_completeness": completeness, "applied": 1.0}


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
    (``keep_challenger``: see :func:`~shopsentry.models.offline_gate.register_and_gate`).

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
    from shopsentry.models import offline_gate
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
    outcome = offline_gate.register_and_gate(
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
