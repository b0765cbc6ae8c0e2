"""`shopsentry detect`: run the fraud-detection workers (the hot path)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from shopsentry.cli.common import settings_of


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(
        ctx: typer.Context,
        workers: Annotated[
            int | None,
            typer.Option(
                "--workers",
                "-w",
                min=1,
                max=64,
                help="Worker processes (default: detector.workers).",
            ),
        ] = None,
        metrics_port: Annotated[
            int,
            typer.Option(
                "--metrics-port",
                min=0,
                max=65535,
                help="Base Prometheus port; worker i serves /metrics on base + i (0 disables).",
                envvar="SHOPSENTRY_METRICS_PORT",
            ),
        ] = 9400,
        metrics_host: Annotated[
            str,
            typer.Option(
                help="Address of the /metrics endpoints (0.0.0.0 inside a container network).",
                envvar="SHOPSENTRY_METRICS_HOST",
            ),
        ] = "127.0.0.1",
        max_events: Annotated[
            int | None,
            typer.Option(
                "--max-events", min=1, help="Each worker stops after this many input records."
            ),
        ] = None,
        exit_when_idle: Annotated[
            float | None,
            typer.Option(
                "--exit-when-idle", min=0, help="Each worker stops after this many idle seconds."
            ),
        ] = None,
        latency_samples: Annotated[
            Path | None,
            typer.Option(
                "--latency-samples", help="Directory for raw e2e latency samples.", hidden=True
            ),
        ] = None,
    ) -> None:
        """Score purchases in real time: read purchases and behaviour, write decisions and alerts.

        Stops on Ctrl-C / SIGTERM after finishing and committing the current batch.
        """
        from rich.console import Console
        from rich.table import Table

        from shopsentry.detection.runner import run_detector
        from shopsentry.detection.worker import WorkerOptions

        settings = settings_of(ctx)
        count = workers or settings.detector.workers
        console = Console(stderr=True)
        options = WorkerOptions(
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            max_events=max_events,
            exit_when_idle_s=exit_when_idle,
            latency_samples=latency_samples,
        )
        ports = (
            f", metrics on {metrics_host}:{metrics_port}..{metrics_port + count - 1}"
            if metrics_port
            else ""
        )
        console.print(
            f"detecting with {count} worker(s) in group [bold]{settings.detector.group_id}[/] "
            f"on {settings.bus}{ports} (Ctrl-C stops)"
        )
        level = logging.getLogger().getEffectiveLevel()
        with console.status("workers running…"):
            statuses = run_detector(settings, count, options, log_level=level)
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
        console.print(table)
        dead = [s for s in statuses if s.died]
        if dead:
            names = ", ".join(str(s.index) for s in dead)
            console.print(f"[red]{len(dead)} worker(s) died: {names}[/]")
            raise typer.Exit(1)
