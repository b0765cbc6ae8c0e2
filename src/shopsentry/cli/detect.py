"""`shopsentry detect`: run the fraud-detection workers (the hot path)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import port_is_free, settings_of
from shopsentry.redaction import redact_url

if TYPE_CHECKING:
    from rich.table import Table

    from shopsentry.config import Settings
    from shopsentry.detection.runner import WorkerStatus


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers", "-w", min=1, max=64, help="Worker processes (default: detector.workers)."
    ),
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Base Prometheus port; worker i serves /metrics on base + i "
        "(0 disables; default: detector.metrics_port, 9400).",
    ),
]
MetricsHostOpt = Annotated[
    str | None,
    typer.Option(
        help="Address of the /metrics endpoints (default: detector.metrics_host, "
        "127.0.0.1; 0.0.0.0 inside a container network).",
    ),
]
MaxEventsOpt = Annotated[
    int | None,
    typer.Option("--max-events", min=1, help="Each worker stops after this many input records."),
]
ExitWhenIdleOpt = Annotated[
    float | None,
    typer.Option("--exit-when-idle", min=0, help="Each worker stops after this many idle seconds."),
]
LatencySamplesOpt = Annotated[
    Path | None,
    typer.Option("--latency-samples", help="Directory for raw e2e latency samples.", hidden=True),
]


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)


def detect(
    ctx: typer.Context,
    workers: WorkersOpt = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    max_events: MaxEventsOpt = None,
    exit_when_idle: ExitWhenIdleOpt = None,
    latency_samples: LatencySamplesOpt = None,
) -> None:
    """Score purchases in real time: read purchases and behaviour, write decisions and alerts.

    Also runs the label consumer (chargebacks and analyst reviews into the entity
    fraud features). Stops on Ctrl-C / SIGTERM after finishing and committing the
    current batch.
    """
    from rich.console import Console

    from shopsentry.detection.runner import run_detector
    from shopsentry.detection.worker import WorkerOptions

    settings = settings_of(ctx)
    overrides = {"metrics_port": metrics_port, "metrics_host": metrics_host}
    detector = settings.detector.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    settings = settings.model_copy(update={"detector": detector})
    metrics_port, host = detector.metrics_port, detector.metrics_host
    count = workers or settings.detector.workers
    preflight(settings, count)
    console = Console(stderr=True)
    options = WorkerOptions(
        metrics_port=metrics_port,
        metrics_host=host,
        max_events=max_events,
        exit_when_idle_s=exit_when_idle,
        latency_samples=latency_samples,
    )
    ports = (
        f", metrics on {host}:{metrics_port}..{metrics_port + count - 1}" if metrics_port else ""
    )
    console.print(
        f"detecting with {count} worker(s) in group [bold]{settings.detector.group_id}[/] "
        f"on {redact_url(settings.bus)}{ports} (Ctrl-C stops)"
    )
    level = logging.getLogger().getEffectiveLevel()
    with console.status("workers running…"):
        statuses = run_detector(settings, count, options, log_level=level)
    console.print(_summary_table(statuses))
    dead = [s for s in statuses if s.died]
    if dead:
        names = ", ".join(str(s.index) for s in dead)
        console.print(f"[red]{len(dead)} worker(s) died: {names}[/]")
        raise typer.Exit(1)


def _summary_table(statuses: list[WorkerStatus]) -> Table:
    """One row per worker: how it exited and what it processed ("-" when it left no summary)."""
    from rich.table import Table

    columns = (
        "worker",
        "pid",
        "exit",
        "records",
        "purchases",
        "dead-lettered",
        "skipped",
        "purch/s",
    )
    table = Table(*columns)
    for s in statuses:
        sm = s.summary
        table.add_row(
            str(s.index),
            str(s.pid),
            str(s.exitcode),
            *(
                (
                    str(sm.records),
                    str(sm.purchases),
                    str(sm.dead_lettered),
                    str(sm.skipped),
                    f"{sm.purchases_per_s:,.0f}",
                )
                if sm
                else ("-",) * 5
            ),
        )
    return table


def preflight(settings: Settings, workers: int) -> None:
    """Fail with one line before any worker starts: a taken metrics port, an unreachable
    broker or Redis (a worker would otherwise die with its own traceback, or retry)."""
    from shopsentry.errors import ConfigError

    base, host = settings.detector.metrics_port, settings.detector.metrics_host
    if base:
        if base + workers - 1 > 65535:
            raise ConfigError(
                f"metrics ports {base}..{base + workers - 1} run past 65535",
                hint="pass a lower --metrics-port",
            )
        taken = [p for p in range(base, base + workers) if not port_is_free(host, p)]
        if taken:
            raise ConfigError(
                f"metrics port {taken[0]} on {host} is taken (worker i serves {base} + i)",
                hint="stop whatever holds it, or pass another --metrics-port (0: none)",
            )
    if settings.kafka_bootstrap is not None:
        from shopsentry.bus import BusConfig, open_log

        log = open_log(BusConfig.from_settings(settings), create_topics=False)
        try:
            log.list_topics()  # BrokerUnavailable within kafka.connect_timeout_s
        finally:
            log.close()
    if settings.state.backend == "redis":
        from shopsentry.features.state_store import StateConfig, open_store

        # StateStoreUnavailable when Redis does not answer
        open_store(StateConfig.from_settings(settings)).close()
