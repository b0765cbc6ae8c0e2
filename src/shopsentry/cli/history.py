"""`shopsentry history import FILE`: your own transactions as a history directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import settings_of

if TYPE_CHECKING:
    from shopsentry.warehouse.history_import import ImportSummary


def _report(summary: ImportSummary) -> None:
    mapped = ", ".join(f"{k}<-{v}" for k, v in summary.columns.items())
    typer.echo(f"columns: {mapped}")
    if summary.ignored:
        typer.echo(f"ignored columns: {', '.join(summary.ignored)}")
    typer.echo(
        f"{summary.rows:,} rows: {summary.imported:,} imported, {summary.rejected:,} rejected;"
        f" {summary.fraud_labels:,} fraud labels, {summary.not_fraud:,} not fraud,"
        f" {summary.unflagged:,} without a fraud flag ({summary.seconds:.1f}s)"
    )
    for reason, count in summary.reasons.most_common(5):
        typer.echo(f"  rejected {count:,}x {reason}")
    typer.echo(f"wrote {summary.events_path} and {summary.labels_path}")
    if summary.rejects_path is not None:
        typer.echo(f"rejected rows (row number, field, reason): {summary.rejects_path}")


def register(app: typer.Typer) -> None:
    history_app = typer.Typer(help="Bring your own transaction history in.", no_args_is_help=True)
    app.add_typer(history_app, name="history")

    from shopsentry.warehouse.history_import import FIELDS, REQUIRED

    fields = "\n".join(
        f"- {name}{' (required)' if name in REQUIRED else ''}: {what}"
        for name, what in FIELDS.items()
    )

    @history_app.command("import", epilog=f"Fields a column can map to:\n\n{fields}")
    def import_(
        ctx: typer.Context,
        file: Annotated[
            Path, typer.Argument(help="A .csv, .parquet or .jsonl file, one purchase a row.")
        ],
        out: Annotated[
            Path,
            typer.Option(help="History directory to write (read by `train --history`)."),
        ],
        mapping: Annotated[
            Path | None,
            typer.Option(help="TOML with \\[columns], \\[defaults] and \\[labels] delay_days."),
        ] = None,
        map_: Annotated[
            list[str] | None,
            typer.Option("--map", help="FIELD=COLUMN, e.g. --map amount=TX_AMOUNT (repeatable)."),
        ] = None,
        default: Annotated[
            list[str] | None,
            typer.Option(help="FIELD=VALUE for a field with no column, e.g. --default country=FR."),
        ] = None,
        label_delay_days: Annotated[
            float | None,
            typer.Option(help="Fraud labels known this many days after the purchase."),
        ] = None,
        rejects: Annotated[
            Path | None,
            typer.Option(help="Where rejected rows go (default: OUT.rejects.jsonl, beside OUT)."),
        ] = None,
    ) -> None:
        """Map a file's columns onto purchases (and its fraud column onto labels) and
        write a history directory; rows that cannot be imported go to the rejects file."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from shopsentry.warehouse.history_import import build_mapping, import_history

        settings = settings_of(ctx)
        columns = build_mapping(
            settings.history_import,
            toml_path=mapping,
            columns=map_ or [],
            defaults=default or [],
            label_delay_days=label_delay_days,
        )
        bar = Progress(TextColumn("importing rows"), BarColumn(), MofNCompleteColumn())
        task = bar.add_task("import", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.start()  # on the first batch: a mapping error prints no empty bar
            bar.update(task, completed=done, total=total)

        try:
            summary = import_history(file, out, columns, rejects_path=rejects, progress=advance)
        finally:
            bar.stop()
        _report(summary)
