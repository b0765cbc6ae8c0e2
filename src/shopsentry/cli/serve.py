"""`shopsentry serve` (the HTTP service and dashboard) and `shopsentry apikeys`.

A key's secret is printed once, at creation, and never stored or logged in clear.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shopsentry.cli.common import settings_of

apikeys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(apikeys_app, name="apikeys")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind.", envvar="SHOPSENTRY_API__HOST")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", envvar="SHOPSENTRY_API__PORT")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Demo mode: create and print the well-known demo keys.")
    ] = False,
) -> None:
    """Run the API, the alert store consumer and the dashboard."""
    import uvicorn
    from rich.console import Console
    from rich.table import Table

    from shopsentry.api.app import create_app, describe_keys

    settings = settings_of(ctx)
    if demo and not settings.api.demo_mode:
        settings = settings.model_copy(
            update={"api": settings.api.model_copy(update={"demo_mode": True})}
        )
    app = create_app(settings)
    console = Console()
    if app.state.demo_keys:
        table = Table(title="demo API keys (well known: demo mode only)")
        for column in ("role", "source", "token"):
            table.add_column(column)
        for row in describe_keys(app.state.demo_keys):
            table.add_row(row["role"], row["source"], row["token"])
        console.print(table)
    console.print(
        f"dashboard: http://{host}:{port}/dashboard   API docs: http://{host}:{port}/docs"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


@apikeys_app.command("create")
def create_key(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option(help="ingest (POST /v1/events), analyst (alerts, reviews) or admin.")
    ],
    source: Annotated[
        str | None, typer.Option(help="For ingest keys: the source it speaks for (web|mobile|pos).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Issue a key and print it once (only its hash is kept)."""
    from shopsentry.api.app import open_keys

    keys = open_keys(settings_of(ctx))
    try:
        issued = keys.create(role, source, name=name)
    finally:
        keys.close()
    typer.echo(f"key id: {issued.key_id}  role: {issued.role}  source: {issued.source or '-'}")
    typer.echo(issued.token)
    typer.echo("store it now: it cannot be shown again", err=True)


@apikeys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Every key's id, role, source and state (never the secret)."""
    from rich.console import Console
    from rich.table import Table

    from shopsentry.api.app import open_keys

    keys = open_keys(settings_of(ctx))
    try:
        rows = keys.list()
    finally:
        keys.close()
    table = Table()
    for column in ("key_id", "role", "source", "name", "demo", "created_at", "revoked_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] if row[c] is not None else "-") for c in row))
    Console().print(table)


@apikeys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str | None, typer.Argument(help="The key id to revoke.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Revoke every well-known demo key.")] = False,
) -> None:
    """Revoke one key, or all demo keys before running outside demo mode."""
    from shopsentry.api.app import open_keys
    from shopsentry.errors import ConfigError

    if key_id is None and not demo:
        raise ConfigError("nothing to revoke", hint="pass a KEY_ID or --demo")
    keys = open_keys(settings_of(ctx))
    try:
        count = keys.revoke_demo_keys() if demo else int(keys.revoke(key_id or ""))
    finally:
        keys.close()
    typer.echo(f"revoked {count} key(s)")
