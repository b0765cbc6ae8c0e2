"""`shopsentry backup`: back up what the log cannot rebuild, check it, restore it.

shopsentry backup create
shopsentry backup list
shopsentry backup verify [ID]          (default: the latest complete backup)
shopsentry backup restore [ID] --yes   (consumers of the data dir stopped first)

Backups go to ``lake.backup_url`` (default ``<data dir>/lake/backups``); the DR
procedure around them is ``docs/runbook.md``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from shopsentry.cli.common import settings_of

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
BackupId = Annotated[
    str | None, typer.Argument(help="Backup id (default: the latest complete one).")
]
Yes = Annotated[bool, typer.Option("--yes", help="Replace the data dir's stores without asking.")]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} TB"


backup_app = typer.Typer(
    help="Backups of the warehouse, alerts, keys, models and state; verify and restore.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")


@backup_app.command("create")
def create(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Take a backup now (consistent per part, offsets recorded), then prune old ones."""
    from shopsentry.backup import create_backup

    manifest = create_backup(settings_of(ctx))
    if as_json:
        typer.echo(json.dumps(manifest.body(), indent=2))
        return
    size = sum(p.bytes for p in manifest.parts.values())
    typer.echo(
        f"backup {manifest.id}: {', '.join(sorted(manifest.parts))} "
        f"({_size(size)}, {manifest.seconds:.1f}s)"
    )


@backup_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Backups under the backup URL, newest first."""
    from dataclasses import asdict

    from shopsentry.backup import list_backups

    infos = list_backups(settings_of(ctx))
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    if not infos:
        typer.echo("no backups yet (`shopsentry backup create`)")
    for info in infos:
        state = "complete" if info.complete else "PARTIAL"
        typer.echo(f"{info.id}  {state:<8}  {_size(info.bytes):>7}  {', '.join(info.parts)}")


@backup_app.command("verify")
def verify(ctx: typer.Context, backup_id: BackupId = None) -> None:
    """Check a backup's manifest and every archive's size and SHA-256."""
    from shopsentry.backup import BackupInvalid, verify_backup

    checked, problems = verify_backup(settings_of(ctx), backup_id)
    if problems:
        raise BackupInvalid(checked, problems)
    typer.echo(f"backup {checked} is complete and intact")


@backup_app.command("restore")
def restore(
    ctx: typer.Context, backup_id: BackupId = None, yes: Yes = False, as_json: AsJson = False
) -> None:
    """Replace every backed-up store with one verified backup and rewind the consumer
    groups to its offsets. Stop the detector, API and loader first."""
    from shopsentry.backup import restore_backup

    settings = settings_of(ctx)
    if not yes:
        typer.confirm(
            f"replace the stores in {settings.data_dir} with backup {backup_id or '(latest)'}?",
            abort=True,
        )
    result = restore_backup(settings, backup_id)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(
        f"restored backup {result.id} (taken {result.taken_at}): {', '.join(result.parts)} "
        f"in {result.seconds:.1f}s; {result.decisions_kept:,} purchases decided since the "
        "backup keep their decision; start the consumers to replay the log"
    )
