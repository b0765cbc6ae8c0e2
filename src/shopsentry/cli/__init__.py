"""The `shopsentry` command. Each command group lives in its own module and registers
itself here; heavy libraries are imported inside the commands so `--help` stays fast."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from shopsentry import __version__
from shopsentry.cli.common import State
from shopsentry.errors import ShopsentryError

app = typer.Typer(
    name="shopsentry",
    help="E-commerce purchase analytics with real-time fraud detection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_display_type_rich = typer.core.TyperOption.display_type_rich


def _flag_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """Typer's help shows ``<bool>`` beside flags that take no value; show nothing."""
    if self.is_flag or self.count:
        return None
    return _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_type_rich  # type: ignore[method-assign]

# Modules that add commands; each exposes ``register(app)``.
_COMMAND_MODULES = (
    "shopsentry.cli.config_cmd",
    "shopsentry.cli.topics",
    "shopsentry.cli.simulate",
    "shopsentry.cli.detect",
    "shopsentry.cli.train",
    "shopsentry.cli.batch",
    "shopsentry.cli.serve",
    "shopsentry.cli.capacity",
    "shopsentry.cli.notify",
    "shopsentry.cli.demo",
    "shopsentry.cli.history",
    "shopsentry.cli.rules",
    "shopsentry.cli.backup",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shopsentry {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file with settings.", envvar="SHOPSENTRY_CONFIG"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the embedded log, state, warehouse and models live.",
            envvar="SHOPSENTRY_DATA_DIR",
        ),
    ] = None,
    bus: Annotated[
        str | None,
        typer.Option(
            "--bus",
            help="Event log: 'local' or 'kafka://host:port[,host:port]'.",
            envvar="SHOPSENTRY_BUS",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """E-commerce purchase analytics with real-time fraud detection."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = State(config, {"data_dir": data_dir, "bus": bus})


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console entry point: domain errors become one line on stderr and exit code 1."""
    try:
        app()
    except ShopsentryError as exc:
        typer.secho(f"error: {exc.one_line()}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
