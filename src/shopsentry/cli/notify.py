"""`shopsentry notify`: route fraud alerts to webhooks and email."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import settings_of

if TYPE_CHECKING:
    from shopsentry.config import Settings


MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=65535,
        help="Serve /metrics on this port (0: off; default: notifier.metrics_port, 9450).",
    ),
]
MetricsHostOpt = Annotated[
    str | None,
    typer.Option(
        help="Address of the /metrics endpoint (default: notifier.metrics_host, "
        "127.0.0.1; 0.0.0.0 inside a container network).",
    ),
]
DemoOpt = Annotated[
    bool,
    typer.Option(
        "--demo", help="Also deliver every alert by SMTP to a local mailbox in DATA_DIR/mailbox."
    ),
]
UntilIdleOpt = Annotated[
    bool, typer.Option(help="Stop once no alert is waiting (for batch runs and tests).")
]


def register(app: typer.Typer) -> None:
    app.command()(notify)


def notify(
    ctx: typer.Context,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    demo: DemoOpt = False,
    until_idle: UntilIdleOpt = False,
) -> None:
    """Deliver each fraud alert once per channel (webhooks, email), by severity."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from shopsentry.errors import ConfigError
    from shopsentry.notify import Notifier, NotifierSetup

    settings = settings_of(ctx)
    overrides = {"metrics_port": metrics_port, "metrics_host": metrics_host}
    settings = settings.model_copy(
        update={
            "notifier": settings.notifier.model_copy(
                update={k: v for k, v in overrides.items() if v is not None}
            )
        }
    )
    port, host = settings.notifier.metrics_port, settings.notifier.metrics_host
    mailbox = None
    if demo:
        from shopsentry.notify.mailbox import LocalMailbox

        mailbox = LocalMailbox(settings.data_dir / "mailbox").start()
        settings = _with_local_mailbox(settings, mailbox.host, mailbox.port)
        typer.echo(f"demo mailbox: {mailbox.directory}", err=True)
    try:
        notifier = Notifier(NotifierSetup.from_settings(settings))
    except BaseException:
        if mailbox is not None:
            mailbox.stop()
        raise
    if port:
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            notifier.close()
            if mailbox is not None:
                mailbox.stop()
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                hint="pass --metrics-port 0 or a free port",
            ) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(
        f"notifier: {settings.topics.fraud_alerts.name} → "
        + ", ".join(repr(c) for c in notifier.channels)
        + (f"; metrics on http://{host}:{port}/metrics" if port else ""),
        err=True,
    )
    try:
        stats = notifier.run(stop, until_idle=until_idle)
    finally:
        notifier.close()
        if mailbox is not None:
            mailbox.stop()
    typer.echo(
        f"alerts {stats.records}, delivered {stats.delivered}, "
        f"dead-lettered {stats.dead_lettered}, duplicates skipped {stats.duplicates}, "
        f"retries {stats.retries}, undecodable {stats.invalid}",
        err=True,
    )


def _with_local_mailbox(settings: Settings, host: str, port: int) -> Settings:
    """The settings with the email channel pointed at the demo mailbox, every severity."""
    notifier = settings.notifier.model_copy(
        update={
            "smtp_host": host,
            "smtp_port": port,
            "smtp_starttls": False,
            "email_to": settings.notifier.email_to or ("analysts@shopsentry.local",),
            "email_min_severity": "medium",
        }
    )
    return settings.model_copy(update={"notifier": notifier})
