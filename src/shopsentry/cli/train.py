"""`shopsentry train` and `shopsentry models list | promote | challenger | rollback`.

Thin commands over :mod:`shopsentry.models`; xgboost, MLflow and scikit-learn are
imported inside the commands so `shopsentry --help` stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import settings_of, step_progress
from shopsentry.errors import ConfigError
from shopsentry.redaction import redact_url

if TYPE_CHECKING:
    from rich.console import Console

    from shopsentry.models.training import TrainResult


def _parse_as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"bad --as-of {text!r}", hint="write an ISO date-time like 2026-11-20T00:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def print_report(console: Console, result: TrainResult) -> None:
    """The report as tables: metrics vs baseline, recall per scenario, the gate's verdict."""
    from rich.table import Table

    from shopsentry.models.card import metric_rows

    report = result.report
    data = report["data"]
    fit = report["fit"]
    console.print(
        f"training window: {data['train_rows']:,} purchases before {data['validation_start'][:10]}"
        f" ({data['train_fraud_known_at_as_of']:,} fraud labels known at {data['as_of'][:16]});"
        f" fit on {fit['rows_fit']:,}, calibrated on {fit['rows_calibration']:,},"
        f" {fit['rows_immature_dropped']:,} younger than"
        f" {fit['label_maturity_days']:g} days left out; {fit['trees']} trees"
    )
    console.print(
        f"held out: {data['validation_rows']:,} purchases from {data['validation_start'][:10]}"
        f" ({data['validation_fraud']:,} fraud), judged on eventual labels"
    )
    table = Table(title="held-out window: model vs rules baseline")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("rules baseline", justify="right")
    for row in metric_rows(report):
        table.add_row(*row)
    console.print(table)
    model, base = report["model"], report["baseline"]
    scenarios = Table(title="recall per fraud scenario")
    scenarios.add_column("scenario")
    scenarios.add_column("fraud", justify="right")
    scenarios.add_column(f"model at {model['threshold']}", justify="right")
    scenarios.add_column(f"model at {100 * model['fpr_budget']:.0f}% FPR", justify="right")
    scenarios.add_column("rules", justify="right")
    at_budget = model["recall_by_scenario_at_fpr_budget"]
    rules = base["recall_by_scenario_at_threshold"]
    for name, values in sorted(model["recall_by_scenario_at_threshold"].items()):
        scenarios.add_row(
            name,
            f"{values['count']:,}",
            f"{100 * values['recall']:.1f}%",
            f"{100 * at_budget.get(name, {}).get('recall', float('nan')):.1f}%",
            f"{100 * rules.get(name, {}).get('recall', float('nan')):.1f}%",
        )
    console.print(scenarios)
    verdict = "[green]champion[/green]" if result.promoted else "[yellow]challenger[/yellow]"
    console.print(f"version {result.version} is {verdict}: {result.reason}")
    if result.model_dir is not None:
        console.print(f"model card: {result.model_dir / 'model_card.md'}")


HistoryOpt = Annotated[
    Path | None,
    typer.Option(
        help="Directory with events and labels (.parquet or .jsonl), e.g. from "
        "`shopsentry simulate --out DIR`.",
        exists=True,
        file_okay=False,
    ),
]
FromWarehouseOpt = Annotated[
    bool,
    typer.Option("--from-warehouse", help="Read ml_features.training_set from the warehouse."),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        help="Train as of this UTC time: later events and labels known later are "
        "ignored (default: the latest event)."
    ),
]
TreesOpt = Annotated[int, typer.Option(help="Maximum number of boosting rounds.", min=10)]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="XGBoost threads (default: model.nthread).", min=1)
]

models_app = typer.Typer(
    help="Model versions in the registry: list, promote, set the challenger, roll back."
)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.add_typer(models_app, name="models")


def train(
    ctx: typer.Context,
    history: HistoryOpt = None,
    from_warehouse: FromWarehouseOpt = False,
    as_of: AsOfOpt = None,
    trees: TreesOpt = 400,
    threads: ThreadsOpt = None,
) -> None:
    """Train the fraud model, compare it with the rules and the champion, register it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from shopsentry.models.training import TrainingConfig, TrainParams, train_and_register

    if history is not None and from_warehouse:
        raise ConfigError("--history and --from-warehouse exclude each other", hint="pick one")
    settings = settings_of(ctx)
    console = Console()
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with step_progress(columns, console=console, transient=True) as progress:
        result = train_and_register(
            TrainingConfig.from_settings(settings),
            history=history,
            use_warehouse=True if from_warehouse else None,
            as_of=_parse_as_of(as_of),
            params=TrainParams(n_estimators=trees, nthread=threads or settings.model.nthread),
            progress=progress,
        )
    print_report(console, result)


@models_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Versions, newest first, with aliases and held-out metrics."""
    from rich.console import Console
    from rich.table import Table

    from shopsentry.models.registry import RegistryConfig, list_versions

    settings = settings_of(ctx)
    versions = list_versions(RegistryConfig.from_settings(settings))
    console = Console()
    if not versions:
        console.print(f"no versions of {settings.model.name} yet; run `shopsentry train`")
        return
    table = Table(title=f"{settings.model.name} ({redact_url(settings.mlflow_tracking_uri)})")
    for column in ("version", "aliases", "created", "PR-AUC", "recall@FPR", "rules PR-AUC"):
        table.add_column(column)
    table.add_column("note", overflow="fold")
    for v in versions:
        note = v.tags.get("challenger_reason") or v.tags.get("promotion_reason", "")
        if "rolled_back_at" in v.tags:
            note = f"rolled back {v.tags['rolled_back_at'][:16]}; {note}"
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            f"{v.created:%Y-%m-%d %H:%M}",
            _fmt(v.metrics.get("pr_auc")),
            _fmt(v.metrics.get("recall_at_fpr_budget")),
            _fmt(v.metrics.get("baseline_pr_auc")),
            note,
        )
    console.print(table)


@models_app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
) -> None:
    """Make VERSION the champion (its model file is validated first)."""
    from shopsentry.models.registry import RegistryConfig
    from shopsentry.models.registry import promote as do_promote

    settings = settings_of(ctx)
    do_promote(RegistryConfig.from_settings(settings), version)
    typer.echo(f"version {version} is now champion of {settings.model.name}")


@models_app.command()
def challenger(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(help="The version to score beside the champion.")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the challenger alias instead.")
    ] = False,
) -> None:
    """Make VERSION the challenger that running detectors score beside the champion
    (docs/model-ops.md), or --clear it."""
    from shopsentry.models import registry

    if (version is None) == (not clear):
        raise ConfigError("give a VERSION or --clear", hint="not both")
    settings = settings_of(ctx)
    config = registry.RegistryConfig.from_settings(settings)
    if version is None:
        cleared = registry.clear_challenger(config)
        name = settings.model.name
        typer.echo(
            f"challenger v{cleared} of {name} cleared" if cleared else f"{name} had no challenger"
        )
        return
    registry.make_challenger(config, version)
    typer.echo(f"version {version} is now challenger of {settings.model.name}")


@models_app.command()
def rollback(ctx: typer.Context) -> None:
    """Give the champion alias back to the previous champion (running detectors
    switch back without a restart)."""
    from shopsentry.models.registry import RegistryConfig
    from shopsentry.models.registry import rollback as do_rollback

    settings = settings_of(ctx)
    version = do_rollback(RegistryConfig.from_settings(settings))
    typer.echo(f"rolled back: version {version} is champion of {settings.model.name} again")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
