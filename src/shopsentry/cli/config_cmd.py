"""`shopsentry config show` and `shopsentry schema export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shopsentry.cli.common import settings_of


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
    schema_app = typer.Typer(help="Event schemas.", no_args_is_help=True)

    @config_app.command("show")
    def show(
        ctx: typer.Context,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON instead of TOML-like text.")
        ] = False,
    ) -> None:
        """Print the effective configuration (defaults, file, environment), secrets masked."""
        data = settings_of(ctx).redacted()
        if as_json:
            typer.echo(json.dumps(data, indent=2, default=str))
            return
        _print_toml(data)

    @schema_app.command("export")
    def export(
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
        ] = None,
    ) -> None:
        """Export the JSON Schema of every event type."""
        from shopsentry.events import json_schemas

        text = json.dumps(json_schemas(), indent=2)
        if out is None:
            typer.echo(text)
        else:
            out.write_text(text + "\n")
            typer.echo(f"wrote {out}")

    app.add_typer(config_app, name="config")
    app.add_typer(schema_app, name="schema")


def _print_toml(data: dict[str, object], prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and scalars:
        typer.echo(f"[{prefix}]")
    for key, value in scalars.items():
        typer.echo(f"{key} = {json.dumps(value, default=str)}")
    if scalars:
        typer.echo("")
    for key, value in tables.items():
        _print_toml(value, f"{prefix}.{key}" if prefix else key)
