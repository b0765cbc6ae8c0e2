"""The fraud model with and without the entity features, on one simulated history.

    .venv/bin/shopsentry simulate --users 20000 --days 30 --seed 7 --out DIR --format parquet
    .venv/bin/python -m benchmarks.model_entity_ablation DIR

Trains twice on the same split (the training job's own ``fit`` and report): once with
every feature, once without the ``entity`` family, and writes both reports' headline
figures — PR-AUC, recall at the FPR budget overall and per scenario, precision@k per
day per purchase and per card, importance by family — to
``benchmarks/results/model_entity_ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shopsentry.config import Settings
from shopsentry.features import FEATURE_FAMILIES
from shopsentry.models.dataset import TrainingSet, from_history, time_split
from shopsentry.models.training import TrainingConfig, TrainParams, build_report, fit

RESULTS = Path(__file__).resolve().parent / "results"


def _without_entities(data: TrainingSet) -> TrainingSet:
    keep = [i for i, n in enumerate(data.feature_names) if FEATURE_FAMILIES.get(n) != "entity"]
    return replace(
        data,
        feature_names=tuple(data.feature_names[i] for i in keep),
        X=np.ascontiguousarray(data.X[:, keep]),
    )


def _run(settings: Settings, data: TrainingSet) -> dict[str, Any]:
    import xgboost as xgb

    params = TrainParams(nthread=settings.model.nthread)
    as_of = data.end
    split = time_split(data, settings.model.validation_days)
    fitted = fit(split.train, as_of, params, None)
    booster = xgb.Booster(model_file=bytearray(fitted.raw))
    dvalid = xgb.DMatrix(split.valid.X, missing=np.nan, feature_names=list(data.feature_names))
    score = np.asarray(booster.predict(dvalid), dtype=np.float64)
    report = build_report(
        TrainingConfig.from_settings(settings),
        data,
        split.train,
        split.valid,
        split.cutoff,
        as_of,
        fitted,
        params,
        score,
    )
    model = report["model"]
    return {
        "features": len(data.feature_names),
        "pr_auc": model["pr_auc"],
        "roc_auc": model["roc_auc"],
        "recall_at_fpr_budget": model["recall_at_fpr_budget"],
        "fpr_budget": model["fpr_budget"],
        "precision_at_k_mean": model["precision_at_k_mean"],
        "card_precision_at_k_mean": model.get("card_precision_at_k_mean"),
        "recall_by_scenario_at_fpr_budget": model["recall_by_scenario_at_fpr_budget"],
        "recall_by_scenario_at_threshold": model["recall_by_scenario_at_threshold"],
        "importance_by_family": report["importance_by_family"],
        "validation_rows": report["data"]["validation_rows"],
        "validation_fraud": report["data"]["validation_fraud"],
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", type=Path)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        data = from_history(args.history)
        full = _run(settings, data)
        ablated = _run(settings, _without_entities(data))
    result = {
        "command": "python -m benchmarks.model_entity_ablation " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t0, 1),
        "history": str(args.history),
        "with_entity_features": full,
        "without_entity_features": ablated,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_entity_ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    budget = _pct(full["fpr_budget"])
    md = [
        "# Entity features: ablation",
        "",
        f"Command: `{result['command']}` — {result['date']}, nproc {result['nproc']}, load"
        f" average {load_start} at start / {result['load_average_at_end']} at end.",
        f"Validation: {full['validation_rows']:,} purchases, {full['validation_fraud']:,} fraud.",
        "",
        "| metric | with entity features | without |",
        "|---|---|---|",
        f"| features | {full['features']} | {ablated['features']} |",
        f"| PR-AUC | {full['pr_auc']:.4f} | {ablated['pr_auc']:.4f} |",
        f"| ROC-AUC | {full['roc_auc']:.4f} | {ablated['roc_auc']:.4f} |",
        f"| recall at {budget} FPR | {_pct(full['recall_at_fpr_budget'])} |"
        f" {_pct(ablated['recall_at_fpr_budget'])} |",
        f"| precision@100 per day | {_pct(full['precision_at_k_mean'])} |"
        f" {_pct(ablated['precision_at_k_mean'])} |",
        f"| card precision@100 per day | {_pct(full['card_precision_at_k_mean'])} |"
        f" {_pct(ablated['card_precision_at_k_mean'])} |",
        "",
        f"## Recall per scenario at {budget} FPR (and at the 0.7 threshold)",
        "",
        "| scenario | fraud | with | without | with, at 0.7 | without, at 0.7 |",
        "|---|---|---|---|---|---|",
    ]
    fb, ab = full["recall_by_scenario_at_fpr_budget"], ablated["recall_by_scenario_at_fpr_budget"]
    ft, at = full["recall_by_scenario_at_threshold"], ablated["recall_by_scenario_at_threshold"]
    for name in sorted(fb):
        md.append(
            f"| {name} | {fb[name]['count']:,} | {_pct(fb[name]['recall'])} |"
            f" {_pct(ab.get(name, {}).get('recall'))} | {_pct(ft[name]['recall'])} |"
            f" {_pct(at.get(name, {}).get('recall'))} |"
        )
    md += ["", "## Feature importance by family (share of total gain)", ""]
    md += ["| family | with | without |", "|---|---|---|"]
    for family, share in sorted(full["importance_by_family"].items(), key=lambda kv: -kv[1]):
        other = ablated["importance_by_family"].get(family)
        md.append(f"| {family} | {_pct(share)} | {_pct(other)} |")
    (RESULTS / "model_entity_ablation.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
