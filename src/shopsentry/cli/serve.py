"""`shopsentry serve` (the HTTP service and dashboard) and `shopsentry apikeys`.

A key's secret is printed once, at creation, and never stored or logged in clear.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shopsentry.cli.common import bind_listener, settings_of

apikeys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(apikeys_app, name="apikeys")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: api.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to bind (default: api.port, 8000)."),
    ] = None,
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
    api = settings.api.model_copy(
        update={
            "host": host or settings.api.host,
            "port": port or settings.api.port,
            "demo_mode": settings.api.demo_mode or demo,
        }
    )
    settings = settings.model_copy(update={"api": api})
    listener = bind_listener(api.host, api.port, what="the API")
    try:
        app = create_app(settings)
    except BaseException:
        listener.close()
        raise
    console = Console()
    if app.state.demo_keys:
        table = Table(title="demo API keys (well known: demo mode only)")
        for column in ("role", "source", "token"):
            table.add_column(column)
        for row in describe_keys(app.state.demo_keys):
            table.add_row(row["role"], row["source"], row["token"])
        console.print(table)
    base = f"http://{api.host}:{api.port}"
    console.print(f"dashboard: {base}/dashboard   API docs: {base}/docs")
    config = uvicorn.Config(app, host=api.host, port=api.port, log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])


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
