"""`shopsentry batch`: run the batch jobs without Airflow (same functions the DAGs call).

shopsentry batch run hourly_etl [--date 2026-11-24T13] [--history DIR]
shopsentry batch run daily_fraud_report [--date 2026-11-24]
shopsentry batch run weekly_model_retrain [--date 2026-11-29] [--force]
shopsentry batch run retention [--date 2026-11-29]
shopsentry batch load [--history DIR]

Each ``batch run`` is counted in ``shopsentry_dag_runs_total{dag,state}`` under the job's
DAG id, as the Airflow callbacks count scheduled runs, so runs without Airflow show up
on the API's ``/metrics`` too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shopsentry.cli.common import StepProgress, settings_of, step_progress

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)


class Job(StrEnum):
    hourly_etl = "hourly_etl"
    daily_fraud_report = "daily_fraud_report"
    weekly_model_retrain = "weekly_model_retrain"
    retention = "retention"
    model_monitoring = "model_monitoring"


@contextmanager
def _progress() -> Iterator[StepProgress]:
    """Progress bars driven by the jobs' (step, done, total) callback, each ending full."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with step_progress(columns) as update:
        yield update


@contextmanager
def _counted_run(settings: Settings, dag: str) -> Iterator[None]:
    """Record the run as ``success`` when the body returns and ``failed`` when it raises.

    The exception still propagates; bookkeeping never changes a job's outcome, so a
    failure to record is logged, not raised.
    """
    from shopsentry.monitoring.metrics import DagState, dag_runs_path, record_dag_run

    state: DagState = "failed"
    try:
        yield
        state = "success"
    finally:
        try:
            record_dag_run(dag_runs_path(settings.state_dir), dag, state)
        except Exception:
            logger.exception("could not record the %s run of %s", state, dag)


def _echo_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in result.items():
        if isinstance(value, dict):
            table.add_row(f"[bold]{key}[/bold]", "")
            for inner, item in value.items():
                table.add_row(f"  {inner}", readable(item))
        else:
            table.add_row(f"[bold]{key}[/bold]", readable(value))
    Console().print(table)


def readable(value: Any) -> str:
    """A result value as a person reads it: 4 significant digits, counts with commas."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class RunOptions:
    """The options of `batch run` that some jobs read (each job reads its own)."""

    date: str | None
    history: Path | None
    force: bool


JobRunner = Callable[["Settings", RunOptions, StepProgress], dict[str, Any]]


def _hourly_etl(settings: Settings, options: RunOptions, progress: StepProgress) -> dict[str, Any]:
    """--date is a whole day (YYYY-MM-DD) or one hour; without it, the job's own default."""
    from shopsentry.pipelines.common import Interval, parse_day, parse_instant
    from shopsentry.pipelines.hourly_etl import hourly_etl

    date = options.date
    interval = None
    if date is not None:
        interval = (
            Interval.day(parse_day(date))
            if len(date) == 10
            else Interval.hour_of(parse_instant(date))
        )
    return hourly_etl(settings, interval, history=options.history, progress=progress).as_dict()


def _daily_fraud_report(
    settings: Settings, options: RunOptions, progress: StepProgress
) -> dict[str, Any]:
    """--date is the report day."""
    from shopsentry.pipelines.common import parse_day
    from shopsentry.pipelines.daily_fraud_report import daily_fraud_report

    day = parse_day(options.date) if options.date else None
    return daily_fraud_report(settings, day, progress=progress).as_dict()


def _model_monitoring(
    settings: Settings, options: RunOptions, progress: StepProgress
) -> dict[str, Any]:
    """--date: labels known by the end of that day; the result says "now" without it."""
    from shopsentry.pipelines.common import Interval, parse_day
    from shopsentry.pipelines.model_monitoring import model_monitoring

    as_of = Interval.day(parse_day(options.date)).end if options.date else None
    built = model_monitoring(settings, as_of, progress=progress)
    return {
        "as_of": as_of.isoformat() if as_of else "now",
        "models_built": built.models_built,
        "seconds": round(built.seconds, 1),
    }


def _retention(settings: Settings, options: RunOptions, progress: StepProgress) -> dict[str, Any]:
    """--date is the day the hot and warm windows count back from."""
    from shopsentry.pipelines.common import parse_day
    from shopsentry.pipelines.retention import retention

    today = parse_day(options.date) if options.date else None
    return retention(settings, today, progress=progress).as_dict()


def _weekly_model_retrain(
    settings: Settings, options: RunOptions, progress: StepProgress
) -> dict[str, Any]:
    """--date: labels known by the end of that day, or at an exact instant."""
    from shopsentry.pipelines.common import Interval, parse_day, parse_instant
    from shopsentry.pipelines.weekly_model_retrain import weekly_model_retrain

    date = options.date
    as_of = None
    if date is not None:
        as_of = Interval.day(parse_day(date)).end if len(date) == 10 else parse_instant(date)
    return weekly_model_retrain(settings, as_of, force=options.force, progress=progress).as_dict()


# Each job's runner; the pipeline modules are imported only when their job runs.
_RUNNERS: dict[Job, JobRunner] = {
    Job.hourly_etl: _hourly_etl,
    Job.daily_fraud_report: _daily_fraud_report,
    Job.weekly_model_retrain: _weekly_model_retrain,
    Job.retention: _retention,
    Job.model_monitoring: _model_monitoring,
}

JobArg = Annotated[Job, typer.Argument(help="Which job to run.")]
DateOpt = Annotated[
    str | None,
    typer.Option(
        "--date",
        help="hourly_etl: the hour (YYYY-MM-DDTHH) or whole day (YYYY-MM-DD) to process; "
        "daily_fraud_report: the report day (default yesterday); "
        "weekly_model_retrain: train on labels known by the end of this day (default now); "
        "retention: the day the hot and warm windows count back from (default today); "
        "model_monitoring: labels known by the end of this day (default now).",
    ),
]
RunHistoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--history",
        help="hourly_etl: load this Parquet/JSONL directory instead of the log (backfill).",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="weekly_model_retrain: train again even if this week already ran."
    ),
]
LoadHistoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--history",
        help="Parquet/JSONL directory (or file) to load; default: drain the event log.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

batch_app = typer.Typer(
    help="Batch jobs: warehouse load, dbt build, reports, retraining.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(batch_app, name="batch")


@batch_app.command("run")
def run(
    ctx: typer.Context,
    job: JobArg,
    date: DateOpt = None,
    history: RunHistoryOpt = None,
    force: ForceOpt = False,
    as_json: AsJson = False,
) -> None:
    """Run one batch job now, with progress."""
    settings = settings_of(ctx)
    options = RunOptions(date=date, history=history, force=force)
    with _counted_run(settings, job.value), _progress() as progress:
        result = _RUNNERS[job](settings, options, progress)
    _echo_result(result, as_json)


@batch_app.command("docs")
def docs(ctx: typer.Context) -> None:
    """Generate the dbt docs site (lineage, column docs, tests) for the warehouse."""
    from shopsentry.warehouse.dbt import DbtConfig, run_dbt

    settings = settings_of(ctx)
    with _progress() as progress:
        run_dbt(
            DbtConfig.from_settings(settings),
            ["docs", "generate"],
            on_node=lambda n, _w: progress("dbt docs", n, None),
        )
    index = (settings.data_dir / "dbt" / "target" / "index.html").resolve()
    typer.echo(f"dbt docs: {index} (serve the directory, e.g. python -m http.server)")


@batch_app.command("load")
def load(ctx: typer.Context, history: LoadHistoryOpt = None, as_json: AsJson = False) -> None:
    """Load RAW only (no dbt): from the event log, or from history files."""
    from shopsentry.warehouse.history import load_history
    from shopsentry.warehouse.loader import LoaderConfig, load_from_log

    settings = settings_of(ctx)
    with _progress() as progress:
        if history is not None:
            loaded = load_history(
                settings.warehouse_path,
                history,
                progress=lambda d, t: progress("load history", d, t),
            )
        else:
            loaded = load_from_log(
                LoaderConfig.from_settings(settings),
                progress=lambda d, t: progress("load", d, t),
            )
    _echo_result(
        {
            "records_read": loaded.records_read,
            "rows_inserted": loaded.inserted,
            "duplicates_skipped": loaded.duplicates_skipped,
            "seconds": round(loaded.seconds, 3),
            "warehouse": str(settings.warehouse_path),
        },
        as_json,
    )
