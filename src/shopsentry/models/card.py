"""The model card written beside every version: what it was trained on, how it does,
where it is blind, and what the hand-written rules would have done on the same week.

Markdown (readable in a terminal, rendered by MLflow and GitHub) plus one PNG:
precision, recall and false-positive rate against the threshold, with the detector's
threshold and the FPR-budget threshold marked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_FILE = "model_card.md"
PLOT_FILE = "precision_recall.png"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _num(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}"


def _one(value: float) -> str:
    return f"{value:.1f}"


def plot_curves(report: dict[str, Any], path: Path) -> None:
    """Precision / recall / FPR vs threshold for the model, rules baseline as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = report["model"]
    curve = model["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(curve["threshold"], curve["precision"], label="precision", color="#1f77b4")
    ax.plot(curve["threshold"], curve["recall"], label="recall", color="#2ca02c")
    ax.plot(curve["threshold"], curve["fpr"], label="false-positive rate", color="#d62728")
    ax.axvline(
        model["threshold"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"alert threshold {model['threshold']}",
    )
    budget_t = model["threshold_at_fpr_budget"]
    ax.axvline(
        budget_t,
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"{_pct(model['fpr_budget'])} FPR at {budget_t:.3f}",
    )
    base = report["baseline"]
    ax.scatter(
        [model["threshold"]],
        [base["precision_at_threshold"]],
        marker="x",
        color="#1f77b4",
        zorder=5,
        label="rules baseline precision (any rule fires)",
    )
    ax.scatter([model["threshold"]], [base["recall_at_threshold"]], marker="x", color="#2ca02c",
               zorder=5, label="rules baseline recall")  # fmt: skip
    ax.set_xlabel("threshold on fraud probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"held-out window {report['data']['validation_start'][:10]} to {report['data']['end'][:10]}"
    )
    ax.legend(fontsize=7, loc="lower left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def metric_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, model, rules baseline) rows: the card's table and the CLI's."""
    model, base = report["model"], report["baseline"]
    budget = _pct(model["fpr_budget"])
    k = model["review_budget_per_day"]
    spec: list[tuple[str, str, Any]] = [
        ("ROC-AUC", "roc_auc", _num),
        ("PR-AUC", "pr_auc", _num),
        (f"precision at {model['threshold']}", "precision_at_threshold", _pct),
        (f"recall at {model['threshold']}", "recall_at_threshold", _pct),
        (f"FPR at {model['threshold']}", "fpr_at_threshold", _pct),
        (f"flagged per day at {model['threshold']}", "flagged_per_day_at_threshold", _one),
        (f"recall at {budget} FPR", "recall_at_fpr_budget", _pct),
        (f"threshold for {budget} FPR", "threshold_at_fpr_budget", _num),
        (f"precision@{k} per day (mean)", "precision_at_k_mean", _pct),
        (f"card precision@{k} per day (mean)", "card_precision_at_k_mean", _pct),
    ]
    return [
        (label, fmt(model[key]), fmt(base.get(key, float("nan"))))
        for label, key, fmt in spec
        if key in model
    ]


def top_features(report: dict[str, Any], limit: int = 10) -> list[str]:
    """The card's ten most important features (by total gain, from the drift reference):
    the features the drift alert watches (docs/model-ops.md)."""
    columns = (report.get("drift_reference") or {}).get("columns", [])
    ranked = sorted((c for c in columns if c.get("rank")), key=lambda c: c["rank"])[:limit]
    if not ranked:
        return []
    lines = [
        "",
        f"## Top {len(ranked)} features",
        "",
        "By share of the model's total gain; the drift alert watches these (PSI > 0.2).",
        "",
        "| rank | feature | share of gain |",
        "|---|---|---|",
    ]
    lines += [f"| {c['rank']} | {c['name']} | {_pct(c['importance'])} |" for c in ranked]
    return lines


def render(name: str, version: str, report: dict[str, Any]) -> str:
    """The card's markdown."""
    lines = [
        *_data_and_training(name, version, report),
        *_scenarios(report),
        *_families(report),
        *top_features(report),
        *_precision_at_k(report),
        "",
        "## Rules baseline",
        "",
        *(f"- {rule}" for rule in report["baseline"].get("rules", [])),
        *_promotion(report.get("gate", {})),
        *_live_gate_lines(report.get("live_gate")),
        "",
        f"![precision and recall vs threshold]({PLOT_FILE})",
        "",
    ]
    return "\n".join(lines)


def _data_and_training(name: str, version: str, report: dict[str, Any]) -> list[str]:
    data, model, fit = report["data"], report["model"], report["fit"]
    return [
        f"# Model card: {name} v{version}",
        "",
        "XGBoost gradient-boosted trees giving the probability that a purchase is fraud.",
        f"Purchases at or above {model['threshold']} go to review (and raise an alert).",
        "",
        "## Data",
        f"- source: `{data['source']}`",
        f"- window: {data['start']} to {data['end']} ({data['rows']:,} purchases)",
        f"- training: before {data['validation_start']} ({data['train_rows']:,} purchases,"
        f" {data['train_fraud_known_at_as_of']:,} fraud labels known at {data['as_of']};"
        f" {data['train_fraud_not_yet_known']:,} frauds whose label came later"
        " were seen as legitimate)",
        f"- held-out validation: {data['validation_start']} to {data['end']}"
        f" ({data['validation_rows']:,} purchases, {data['validation_fraud']:,} fraud),"
        f" judged on {data['validation_truth']}",
        "",
        "## Training",
        f"- {fit['trees']} trees, depth {report['params']['max_depth']},"
        f" learning rate {report['params']['learning_rate']},"
        f" `scale_pos_weight` {fit['scale_pos_weight']:.1f} (sqrt of the class ratio)",
        "- early stopping and Platt calibration on"
        f" {fit['rows_calibration']:,} training purchases held out of the fit"
        f" ({' to '.join(fit.get('calibration_window') or ['none'])},"
        f" labels at least {fit.get('label_maturity_days', 0):g} days old at training time;"
        f" {fit.get('rows_immature_dropped', 0):,} younger purchases left out of the fit;"
        " estimated share of the slice's fraud already labelled:"
        f" {_pct(fit['calibration'].get('label_completeness', float('nan')))})"
        f" (calibration a={fit['calibration']['a']:.3f}, b={fit['calibration']['b']:.3f},"
        f" {'folded into the trees' if fit['calibration'].get('applied') else 'not applied'})",
        f"- features ({len(report['features'])}): "
        + ", ".join(f"`{f}`" for f in report["features"]),
        "",
        "## Metrics on the held-out window",
        "",
        "| metric | model | rules baseline |",
        "|---|---|---|",
        *(
            f"| {label} | {model_cell} | {base_cell} |"
            for label, model_cell, base_cell in metric_rows(report)
        ),
        "",
        "The rules baseline flags a purchase when any hand-written rule fires; its alert",
        "threshold row is that decision.",
        "",
    ]


def _scenarios(report: dict[str, Any]) -> list[str]:
    model, base = report["model"], report["baseline"]
    lines = [
        "## Recall per fraud scenario",
        "",
        f"| scenario | fraud | model at {model['threshold']} |"
        f" model at {_pct(model['fpr_budget'])} FPR | rules |",
        "|---|---|---|---|---|",
    ]
    at_t = model["recall_by_scenario_at_threshold"]
    at_b = model["recall_by_scenario_at_fpr_budget"]
    rules = base["recall_by_scenario_at_threshold"]
    for scenario in sorted(at_t):
        lines.append(
            f"| {scenario} | {at_t[scenario]['count']:,} | {_pct(at_t[scenario]['recall'])} |"
            f" {_pct(at_b.get(scenario, {}).get('recall', float('nan')))} |"
            f" {_pct(rules.get(scenario, {}).get('recall', float('nan')))} |"
        )
    return lines


def _families(report: dict[str, Any]) -> list[str]:
    families = report.get("importance_by_family") or {}
    if not families:
        return []
    lines = [
        "",
        "## Feature importance by family",
        "",
        "Share of the model's total gain (families: see docs/features.md).",
        "",
        "| family | share of gain |",
        "|---|---|",
    ]
    for family, share in sorted(families.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {family} | {_pct(share)} |")
    return lines


def _precision_at_k(report: dict[str, Any]) -> list[str]:
    model, base = report["model"], report["baseline"]
    cards = model.get("card_precision_at_k_by_day", {})
    lines = [
        "",
        "## Precision@k per day",
        "",
        "Per purchase (fraud among the day's k riskiest purchases) and per card (compromised",
        "cards among the day's k riskiest cards).",
        "",
        "| day | model | rules | model, cards | rules, cards |",
        "|---|---|---|---|---|",
    ]
    for day, value in model["precision_at_k_by_day"].items():
        rules_day = base["precision_at_k_by_day"].get(day, float("nan"))
        card_day = cards.get(day, float("nan"))
        rules_cards = base.get("card_precision_at_k_by_day", {}).get(day, float("nan"))
        lines.append(
            f"| {day} | {_pct(value)} | {_pct(rules_day)} | {_pct(card_day)} |"
            f" {_pct(rules_cards)} |"
        )
    return lines


def _promotion(gate: dict[str, Any]) -> list[str]:
    if not gate:
        return []
    verdict = "promoted to champion" if gate.get("promoted") else "kept as challenger"
    return ["", "## Promotion", "", f"- {verdict}: {gate.get('reason')}"]


def _live_gate_lines(live: dict[str, Any] | None) -> list[str]:
    """The weekly retrain's verdict on this version as live challenger (docs/model-ops.md)."""
    if not live:
        return []
    verdict = "promoted to champion" if live.get("promote") else "not promoted"
    lines = [
        "",
        "## Live evidence",
        "",
        f"Judged as challenger of v{live.get('champion_version')} on"
        f" {str(live.get('as_of', ''))[:16]}: {live.get('purchases', 0):,} purchases both"
        f" scored{_window(live)}, {live.get('labelled_frauds', 0):,} labelled frauds known"
        " by then.",
        "",
        f"- {verdict}: {live.get('reason')}",
    ]
    if live.get("challenger_precision") is not None:
        lines += [
            "",
            "| at equal recall | recall | precision |",
            "|---|---|---|",
            f"| champion v{live.get('champion_version')} | {_pct(live['champion_recall'])} |"
            f" {_pct(live['champion_precision'])} |",
            f"| this version | {_pct(live['challenger_recall'])} |"
            f" {_pct(live['challenger_precision'])} |",
        ]
    return lines


def _window(live: dict[str, Any]) -> str:
    """The live gate's matured window, when the verdict has one."""
    if live.get("scored_purchases") is None:
        return ""
    days = f" {live['window_first']}..{live['window_last']}" if live.get("window_first") else ""
    return (
        f" on the days{days} whose label maturity is >= {live['min_label_maturity']:g}"
        f" (of {live['scored_purchases']:,} on all days)"
    )


def write_card(directory: Path, name: str, version: str, report: dict[str, Any]) -> Path:
    """Write ``model_card.md`` and ``precision_recall.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_curves(report, directory / PLOT_FILE)
    path = directory / CARD_FILE
    path.write_text(render(name, version, report))
    logger.info("model card written to %s", path)
    return path


def rewrite_card(directory: Path, name: str, version: str, report: dict[str, Any]) -> Path:
    """Rewrite ``model_card.md`` from an updated report (the plot stays as it was)."""
    path = directory / CARD_FILE
    path.write_text(render(name, version, report))
    logger.info("model card updated: %s", path)
    return path
