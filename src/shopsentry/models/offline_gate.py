"""Registering a freshly trained version, and the offline promotion gate.

:func:`register_and_gate` is the last step of every training run: it logs the run to
MLflow (params, metrics, the model and its report, card and plot), registers the
version, keeps its files under ``<data_dir>/models/<name>/v<N>/`` and lets the gate
decide its alias. The gate (:func:`decide`) scores the current champion on the *new*
held-out window, so the two versions are compared on identical rows: a version that
does not beat it becomes ``challenger`` with the reason as a tag (unless the live
challenger keeps its place), one that does becomes ``champion``. The alias moves, and
the validation before them, are :mod:`shopsentry.models.registry`'s; the later
judgement on live traffic is :mod:`shopsentry.models.live_gate`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.errors import ModelError
from shopsentry.models.evaluation import EvalWindow, evaluate, scalar_metrics
from shopsentry.models.registry import (
    RegistryConfig,
    client,
    ensure_experiment,
    load_checked,
    registered_alias,
    set_challenger,
    set_champion,
    version_dir,
)
from shopsentry.models.scorer import CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from shopsentry.models.dataset import TrainingSet

logger = logging.getLogger(__name__)

# The gate: PR-AUC must improve, and recall at the FPR budget may not fall by more than this.
RECALL_SLACK = 0.02


@dataclass(frozen=True)
class GateOutcome:
    version: str
    promoted: bool
    reason: str
    model_dir: Path
    champion_version: str | None
    champion_metrics: dict[str, float] | None


def decide(
    new: dict[str, float], champion: dict[str, float] | None, champion_version: str | None
) -> tuple[bool, str]:
    """The promotion rule, on metrics from the same window. Returns (promote, reason)."""
    if champion is None or champion_version is None:
        return True, "no champion yet"
    gain = new["pr_auc"] - champion["pr_auc"]
    recall_drop = champion["recall_at_fpr_budget"] - new["recall_at_fpr_budget"]
    if gain <= 0:
        return False, (
            f"PR-AUC {new['pr_auc']:.4f} does not beat champion v{champion_version}'s "
            f"{champion['pr_auc']:.4f} on the same window"
        )
    if recall_drop > RECALL_SLACK:
        return False, (
            f"recall at the FPR budget falls {recall_drop:.3f} below"
            f" champion v{champion_version}'s "
            f"{champion['recall_at_fpr_budget']:.3f} (allowed {RECALL_SLACK})"
        )
    return True, (
        f"PR-AUC {new['pr_auc']:.4f} beats champion v{champion_version}'s {champion['pr_auc']:.4f} "
        f"on the same window (recall at budget {new['recall_at_fpr_budget']:.3f} vs "
        f"{champion['recall_at_fpr_budget']:.3f})"
    )


def _score_champion(
    config: RegistryConfig, mlc: MlflowClient, valid: TrainingSet
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """(champion version, its metrics on this window, why it could not be scored)."""
    version = registered_alias(mlc, config.files.name, CHAMPION)
    if version is None:
        return None, None, None
    try:
        _, _, scorer = load_checked(config, version, mlc)
    except ModelError as exc:
        return version, None, exc.one_line()
    window = EvalWindow(y=valid.is_fraud, occurred_at=valid.occurred_at, scenario=valid.scenario)
    report = evaluate(
        window,
        scorer.predict(valid.X),
        threshold=config.threshold,
        fpr_budget=config.fpr_budget,
        review_budget=config.review_budget_per_day,
        with_curve=False,
    )
    return version, scalar_metrics(report), None


def _flat_params(report: dict[str, Any]) -> dict[str, Any]:
    params = {f"param.{k}": v for k, v in report["params"].items()}
    params.update({f"fit.{k}": v for k, v in report["fit"].items() if not isinstance(v, dict)})
    params.update({f"fit.calibration_{k}": v for k, v in report["fit"]["calibration"].items()})
    params.update({f"data.{k}": v for k, v in report["data"].items()})
    params["features"] = ",".join(report["features"])[:6000]
    return params


def register_and_gate(
    config: RegistryConfig,
    raw: bytes,
    report: dict[str, Any],
    valid: TrainingSet,
    *,
    keep_challenger: str | None = None,
) -> GateOutcome:
    """Log the run, register the version, write its card, and apply the promotion gate.
    A version that does not win becomes the challenger, unless ``keep_challenger`` names
    the live challenger that keeps its place (its evidence is still maturing)."""
    import mlflow
    import xgboost as xgb

    from shopsentry.models.card import write_card

    mlc = client(config)
    experiment_id = ensure_experiment(config, mlc)
    name = config.files.name
    champion_version, champion_metrics, champion_problem = _score_champion(config, mlc, valid)
    new_metrics = scalar_metrics(report["model"])
    if champion_problem is not None:
        promote, reason = (
            True,
            f"champion v{champion_version} cannot score this window: {champion_problem}",
        )
    else:
        promote, reason = decide(new_metrics, champion_metrics, champion_version)
        trained_until = _tag(mlc, name, champion_version, "validation_start")
        if trained_until and trained_until > report["data"]["validation_start"]:
            # a back-dated run (--as-of): the champion has seen part of this window
            reason += f" (note: v{champion_version} was trained on data up to {trained_until[:10]})"
    report["gate"] = {
        "champion_version": champion_version,
        "champion": champion_metrics,
        "promoted": promote,
        "reason": reason,
    }
    booster = xgb.Booster(model_file=bytearray(raw))
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    ) as run:
        mlflow.log_params(_flat_params(report))
        metrics = {**new_metrics, **scalar_metrics(report["baseline"], "baseline_")}
        if champion_metrics:
            metrics.update({f"champion_{k}": v for k, v in champion_metrics.items()})
        for scenario, values in report["model"]["recall_by_scenario_at_fpr_budget"].items():
            metrics[f"recall_at_budget.{scenario}"] = values["recall"]
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN-free
        info = mlflow.xgboost.log_model(
            booster,
            name="model",
            registered_model_name=name,
            pip_requirements=[f"xgboost=={xgb.__version__}"],
            model_format="json",
        )
        version = str(info.registered_model_version)
        report["version"] = version
        report["run_id"] = run.info.run_id
        target = version_dir(config, version)
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.json").write_bytes(raw)
        (target / "report.json").write_text(json.dumps(report, indent=2, default=str))
        write_card(target, name, version, report)
        for artifact in ("report.json", "model_card.md", "precision_recall.png"):
            mlflow.log_artifact(str(target / artifact), artifact_path="report")
    mlc.set_model_version_tag(name, version, "sha256", hashlib.sha256(raw).hexdigest())
    mlc.set_model_version_tag(name, version, "gate_reason", reason)
    mlc.set_model_version_tag(name, version, "validation_start", report["data"]["validation_start"])
    for key in ("pr_auc", "recall_at_fpr_budget", "roc_auc"):
        mlc.set_model_version_tag(name, version, key, f"{new_metrics[key]:.4f}")
    if promote:
        set_champion(config, version, reason, mlc)
    elif keep_challenger is not None:
        why = f"not made challenger: v{keep_challenger} keeps its place while its labels mature"
        mlc.set_model_version_tag(name, version, "challenger_reason", why)
        logger.info("v%s %s", version, why)
    else:
        set_challenger(config, version, reason, mlc)
    return GateOutcome(version, promote, reason, target, champion_version, champion_metrics)


def _tag(mlc: MlflowClient, name: str, version: str | None, key: str) -> str | None:
    from mlflow.exceptions import MlflowException

    if version is None:
        return None
    try:
        value = mlc.get_model_version(name, version).tags.get(key)
    except MlflowException:
        return None
    return str(value) if value is not None else None
