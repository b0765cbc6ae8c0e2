"""`shopsentry simulate`: customer traffic with labelled fraud, into the log or files."""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from shopsentry.cli.common import parse_duration, parse_rate, settings_of
from shopsentry.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from shopsentry.bus.base import EventLog
    from shopsentry.config import Settings, TopicsSettings
    from shopsentry.simulator import Simulator, SimulatorConfig
    from shopsentry.simulator.drift import DriftSpec

logger = logging.getLogger(__name__)

_WINDOW_S = 3600.0  # an endless paced run is simulated one hour at a time


def parse_start(text: str) -> datetime:
    """ISO 8601 date or datetime; a value without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"bad start {text!r}", hint="write it like 2026-01-01 or 2026-01-01T08:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


RateOpt = Annotated[
    str | None,
    typer.Option(
        help="Events per time unit: 1000/h (default), 3000/h, 50/s. --days: natural rate."
    ),
]
DurationOpt = Annotated[
    str | None,
    typer.Option(
        help="Simulated time, e.g. 1h, 30m, 2d. Default: 1h when fast, endless when paced."
    ),
]
FastOpt = Annotated[
    bool,
    typer.Option(
        "--as-fast-as-possible", help="Write with simulated timestamps as fast as possible."
    ),
]
SpeedOpt = Annotated[
    float,
    typer.Option(
        help="Accelerated clock: simulated time runs this many times real time.", min=0.001
    ),
]
UsersOpt = Annotated[
    int | None,
    typer.Option(help="Population size (default 2,000; 20,000 with --days).", min=1),
]
DaysOpt = Annotated[
    float | None,
    typer.Option(
        help="History mode: this many days of natural activity, as fast as possible.", min=0.01
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Seed: the same seed gives the same bytes.")]
StartOpt = Annotated[
    str | None,
    typer.Option(
        help="Simulated start (ISO 8601, UTC if no zone). Default: now; --days: D days ago."
    ),
]
FraudShareOpt = Annotated[
    float,
    typer.Option("--fraud-share", help="Share of purchases that are fraud.", min=0.0, max=0.49),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(help="Write events and labels files into this directory instead of the log."),
]
FormatOpt = Annotated[
    str, typer.Option("--format", help="File format with --out: jsonl or parquet.")
]
LegitLabelsOpt = Annotated[
    bool,
    typer.Option(
        "--legit-labels", help="Also label legitimate purchases (after 30 days' clearance)."
    ),
]
LabelsOpt = Annotated[
    bool,
    typer.Option("--labels/--no-labels", help="Publish labels to the labels topic (log output)."),
]
DriftOpt = Annotated[
    str | None,
    typer.Option(
        help="Inject a drift into purchases from --drift-from on: amount (amounts "
        "times --drift-factor, default 3) or new_device (that share of purchases, "
        "default 0.5, on never-seen devices).",
    ),
]
DriftFromOpt = Annotated[
    str | None,
    typer.Option(
        "--drift-from", help="Simulated time the drift starts (ISO 8601, UTC if no zone)."
    ),
]
DriftFactorOpt = Annotated[
    float | None,
    typer.Option("--drift-factor", help="The drift's size (see --drift).", min=0.0001),
]


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def simulate(
    ctx: typer.Context,
    rate: RateOpt = None,
    duration: DurationOpt = None,
    fast: FastOpt = False,
    speed: SpeedOpt = 1.0,
    users: UsersOpt = None,
    days: DaysOpt = None,
    seed: SeedOpt = None,
    start: StartOpt = None,
    fraud_share: FraudShareOpt = 0.015,
    out: OutOpt = None,
    fmt: FormatOpt = "parquet",
    legit_labels: LegitLabelsOpt = False,
    labels: LabelsOpt = True,
    drift: DriftOpt = None,
    drift_from: DriftFromOpt = None,
    drift_factor: DriftFactorOpt = None,
) -> None:
    """Simulate customers: purchases and behaviour from web, mobile and POS, with fraud.

    Labels (which purchases were fraud, and when that became known) go out of band:
    to the labels topic or labels file, never into the events the detector reads.
    """
    from shopsentry.simulator import SimulatorConfig

    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"unknown format {fmt!r}", hint="use --format jsonl or --format parquet")
    history = days is not None
    events_per_hour = parse_rate(rate) * 3600 if rate is not None else (None if history else 1000.0)
    run_seed = seed if seed is not None else secrets.randbelow(2**31)
    begin, span_s, paced = _time_span(days, duration, start, fast=fast, to_files=out is not None)
    population = users or (20_000 if history else 2_000)
    drift_spec = _drift_spec(drift, drift_from, drift_factor)

    def config_for(at: datetime, seconds: float) -> SimulatorConfig:
        return SimulatorConfig(
            users=population,
            start=at,
            duration_s=seconds,
            events_per_hour=events_per_hour,
            fraud_share=fraud_share,
            seed=run_seed,
            legit_labels=legit_labels,
            drift=drift_spec,
        )

    typer.echo(f"seed {run_seed}, {population} users, from {begin.isoformat()}", err=True)
    if out is not None:
        _to_files(config_for(begin, span_s), out, fmt)  # type: ignore[arg-type]
        return
    settings = settings_of(ctx)
    if paced:
        _to_log_paced(settings, config_for, begin, span_s, speed=speed, labels=labels)
    else:
        _to_log_once(settings, config_for(begin, span_s), labels=labels)


def _time_span(
    days: float | None, duration: str | None, start: str | None, *, fast: bool, to_files: bool
) -> tuple[datetime, float, bool]:
    """The simulated start, the span in seconds (0: endless) and whether to pace the run.

    History mode (``--days``) ends at today's midnight and is never paced; otherwise a run
    is paced on the clock unless it goes to files or runs as fast as possible.
    """
    if days is not None:
        span_s = days * 86400
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        begin = parse_start(start) if start else midnight - timedelta(seconds=span_s)
        paced = False
    else:
        paced = not fast and not to_files
        span_s = parse_duration(duration) if duration else (0.0 if paced else 3600.0)
        begin = parse_start(start) if start else datetime.now(UTC).replace(microsecond=0)
    if not paced and span_s <= 0:
        raise ConfigError("duration must be positive", hint="pass --duration 1h")
    return begin, span_s, paced


def _drift_spec(
    drift: str | None, drift_from: str | None, drift_factor: float | None
) -> DriftSpec | None:
    """The ``--drift`` options as a spec; the two that qualify a drift need ``--drift``."""
    if drift is not None:
        from shopsentry.simulator.drift import parse_drift

        if drift_from is None:
            raise ConfigError("--drift needs --drift-from", hint="e.g. --drift-from 2026-01-05")
        return parse_drift(drift, parse_start(drift_from), drift_factor)
    if drift_from is not None or drift_factor is not None:
        raise ConfigError("--drift-from and --drift-factor need --drift", hint="--drift amount")
    return None


def _to_log_paced(
    settings: Settings,
    config_for: Callable[[datetime, float], SimulatorConfig],
    begin: datetime,
    span_s: float,
    *,
    speed: float,
    labels: bool,
) -> None:
    """Publish on the accelerated clock, one simulated hour at a time, so a run with no
    end (span_s 0) goes on until Ctrl-C."""
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        window = 0
        while span_s <= 0 or window * _WINDOW_S < span_s:
            seconds = _WINDOW_S if span_s <= 0 else min(_WINDOW_S, span_s - window * _WINDOW_S)
            at = begin + timedelta(seconds=window * _WINDOW_S)
            _to_log(config_for(at, seconds), log, settings.topics, speed=speed, labels=labels)
            window += 1
    finally:
        log.close()


def _to_log_once(settings: Settings, config: SimulatorConfig, *, labels: bool) -> None:
    """Publish the whole span as fast as possible, with simulated timestamps."""
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        _to_log(config, log, settings.topics, speed=None, labels=labels)
    finally:
        log.close()


def _summary(sim: Simulator, elapsed: float) -> str:
    s = sim.stats
    share = s["fraud_purchases"] / s["purchases"] if s["purchases"] else 0.0
    scenarios = ", ".join(f"{k} {v}" for k, v in s["fraud_by_scenario"].items()) or "none"
    return (
        f"{s['events']} events ({s['purchases']} purchases, "
        f"{s['fraud_purchases']} fraud = {share:.2%}) "
        f"in {elapsed:.1f}s; fraud by scenario: {scenarios}"
    )


def _progress_bar(total: int, what: str):  # type: ignore[no-untyped-def]
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    )
    task = progress.add_task(what, total=total)
    return progress, lambda n: progress.advance(task, n)


def _to_files(config: SimulatorConfig, out: Path, fmt: Literal["jsonl", "parquet"]) -> None:
    from shopsentry.simulator import Simulator, write_history

    began = time.perf_counter()
    sim = Simulator(config)
    progress, advance = _progress_bar(len(sim), f"writing {fmt}")
    with progress:
        files = write_history(sim, out, fmt=fmt, progress=advance)
    typer.echo(_summary(sim, time.perf_counter() - began))
    typer.echo(
        f"wrote {files.events_path} ({files.events} events)"
        f" and {files.labels_path} ({files.labels} labels)"
    )


def _to_log(
    config: SimulatorConfig,
    log: EventLog,
    topics: TopicsSettings,
    *,
    speed: float | None,
    labels: bool,
) -> None:
    from shopsentry.simulator import Simulator, publish

    began = time.perf_counter()
    sim = Simulator(config)
    what = "publishing" if speed is None else f"publishing at {speed:g}x"
    progress, advance = _progress_bar(len(sim), what)
    with progress:
        result = publish(sim, log, topics, speed=speed, labels=labels, progress=advance)
    typer.echo(_summary(sim, time.perf_counter() - began))
    typer.echo(
        f"published {result.purchases} purchases and {result.behaviour} behaviour events"
        f" and {result.labels} labels"
    )
