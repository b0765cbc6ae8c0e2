"""`shopsentry topics list | describe NAME | create`: the event log's topics and groups.

The same commands work on the embedded log and on Kafka: they go through
:func:`shopsentry.bus.open_log` and the :class:`~shopsentry.bus.base.EventLog` interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import settings_of
from shopsentry.redaction import redact_url

if TYPE_CHECKING:
    from shopsentry.bus.base import EventLog
    from shopsentry.config import Settings


def _open(settings: Settings, *, create: bool = False) -> EventLog:
    from shopsentry.bus import BusConfig, open_log

    return open_log(BusConfig.from_settings(settings), create_topics=create)


topics_app = typer.Typer(help="Topics and consumer groups of the event log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")


@topics_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every topic with its partitions, records kept and end offsets."""
    from rich.console import Console
    from rich.table import Table

    settings = settings_of(ctx)
    log = _open(settings)
    try:
        table = Table("topic", "partitions", "records kept", "end offsets", title=_where(settings))
        for name in log.list_topics():
            info = log.describe_topic(name)
            kept = sum(p.end_offset - p.start_offset for p in info.partitions)
            ends = " ".join(str(p.end_offset) for p in info.partitions)
            table.add_row(name, str(len(info.partitions)), f"{kept:,}", ends)
    finally:
        log.close()
    Console().print(table)


@topics_app.command("describe")
def describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Topic name, e.g. purchase-events.")],
) -> None:
    """Partitions (start/end offsets, replicas), config, and every group's lag."""
    from rich.console import Console
    from rich.table import Table

    settings = settings_of(ctx)
    log = _open(settings)
    try:
        info = log.describe_topic(name)
        parts = Table(
            "partition", "start offset", "end offset", "leader", "replicas", "isr", title=name
        )
        for p in info.partitions:
            parts.add_row(
                str(p.partition),
                str(p.start_offset),
                str(p.end_offset),
                "-" if p.leader is None else str(p.leader),
                ",".join(map(str, p.replicas)) or "-",
                ",".join(map(str, p.isr)) or "-",
            )
        config = Table("config", "value")
        for key, value in sorted(info.config.items()):
            config.add_row(key, value)
        lags = Table(
            "group",
            "partition",
            "committed",
            "end offset",
            "lag",
            "member",
            title="consumer groups",
        )
        for group in log.list_groups():
            for lag in log.group_lag(group):
                if lag.topic != name:
                    continue
                lags.add_row(
                    group,
                    str(lag.partition),
                    "-" if lag.committed is None else str(lag.committed),
                    str(lag.end_offset),
                    str(lag.lag),
                    lag.member or "-",
                )
    finally:
        log.close()
    console = Console()
    console.print(parts)
    console.print(config)
    if lags.row_count:
        console.print(lags)
    else:
        console.print("no consumer group has read this topic yet")


@topics_app.command("create")
def create(
    ctx: typer.Context,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor",
            min=1,
            help="Override every topic's replication factor (1 for a single-broker dev Kafka).",
        ),
    ] = None,
) -> None:
    """Create the configured topics (partitions, replication, retention, min ISR)."""
    from shopsentry.bus import topic_specs

    settings = settings_of(ctx)
    if replication_factor is not None:
        settings = settings.model_copy(
            update={"topics": settings.topics.with_replication(replication_factor)}
        )
    specs = topic_specs(settings.topics)
    log = _open(settings)
    try:
        existing = set(log.list_topics())
        log.create_topics(specs)
        for spec in specs:
            state = "exists" if spec.name in existing else "created"
            typer.echo(
                f"{state:8} {spec.name}: {spec.partitions} partitions, "
                f"RF {spec.replication_factor}, min ISR {spec.min_insync_replicas}, "
                f"retention.ms {spec.retention_ms}"
            )
    finally:
        log.close()


def _where(settings: Settings) -> str:
    return (
        redact_url(settings.bus)
        if settings.kafka_bootstrap
        else f"embedded log at {settings.log_dir}"
    )
