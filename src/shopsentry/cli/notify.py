"""`shopsentry notify`: route fraud alerts to webhooks and email."""

from __future__ import annotations

from typing import Annotated

import typer

from shopsentry.cli.common import settings_of


def register(app: typer.Typer) -> None:
    @app.command()
    def notify(
        ctx: typer.Context,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                help="Serve /metrics on 127.0.0.1:PORT (0: off; default: settings, 9450)."
            ),
        ] = None,
        metrics_host: Annotated[
            str,
            typer.Option(
                help="Address of the /metrics endpoint (0.0.0.0 inside a container network).",
                envvar="SHOPSENTRY_METRICS_HOST",
            ),
        ] = "127.0.0.1",
        until_idle: Annotated[
            bool, typer.Option(help="Stop once no alert is waiting (for batch runs and tests).")
        ] = False,
    ) -> None:
        """Deliver each fraud alert once per channel (webhooks, email), by severity."""
        import signal
        import threading

        from prometheus_client import start_http_server

        from shopsentry.notify import Notifier

        settings = settings_of(ctx)
        notifier = Notifier(settings)
        port = settings.notifier.metrics_port if metrics_port is None else metrics_port
        if port:
            start_http_server(port, addr=metrics_host)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        typer.echo(
            f"notifier: {settings.topics.fraud_alerts.name} → "
            + ", ".join(repr(c) for c in notifier.channels)
            + (f"; metrics on http://{metrics_host}:{port}/metrics" if port else ""),
            err=True,
        )
        try:
            stats = notifier.run(stop, until_idle=until_idle)
        finally:
            notifier.close()
        typer.echo(
            f"alerts {stats.records}, delivered {stats.delivered}, "
            f"dead-lettered {stats.dead_lettered}, duplicates skipped {stats.duplicates}, "
            f"retries {stats.retries}, undecodable {stats.invalid}",
            err=True,
        )
