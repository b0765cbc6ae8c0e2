"""`shopsentry capacity`: the design's Little's-law sizing, computed and measured."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from shopsentry.cli.common import parse_duration, parse_rate, settings_of

if TYPE_CHECKING:
    from rich.console import Console

    from shopsentry.config import Settings
    from shopsentry.monitoring.capacity import CapacityPlan, ScalingPlan
    from shopsentry.monitoring.measure import Measurement


def default_metrics_urls(settings: Settings) -> list[str]:
    """The detector workers' and the API's metrics endpoints for these settings (worker i
    of `shopsentry detect` serves /metrics on detector.metrics_port + i)."""
    detector = settings.detector
    urls = (
        [
            f"http://{detector.metrics_host}:{detector.metrics_port + i}/metrics"
            for i in range(detector.workers)
        ]
        if detector.metrics_port
        else []
    )
    urls.append(f"http://{settings.api.host}:{settings.api.port}/metrics")
    return urls


UrlsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Metrics URLs for --measure (default: the detector workers' and the API's).",
        show_default=False,
    ),
]
RateOpt = Annotated[
    str | None, typer.Option(help="Expected load, e.g. 1000/h (default: settings).")
]
PeakOpt = Annotated[str | None, typer.Option(help="Peak load, e.g. 3000/h (default: settings).")]
StageOpt = Annotated[
    list[str] | None,
    typer.Option("--stage", help="Override or add a stage time, name=ms (repeatable)."),
]
ExactOpt = Annotated[
    bool,
    typer.Option(help="Keep every step exact instead of rounding λ and L to 0.01 like the design."),
]
MeasureOpt = Annotated[
    bool,
    typer.Option("--measure", help="Also measure the running system through its /metrics."),
]
IntervalOpt = Annotated[str, typer.Option(help="How long to measure, e.g. 30s.")]
SamplesOpt = Annotated[int, typer.Option(min=2, help="Scrapes spread over the interval.")]
TargetOpt = Annotated[
    str | None,
    typer.Option(help="Target rate for headroom and scaling steps, e.g. 50000/h."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def register(app: typer.Typer) -> None:
    app.command()(capacity)


def capacity(
    ctx: typer.Context,
    urls: UrlsArg = None,
    rate: RateOpt = None,
    peak: PeakOpt = None,
    stage: StageOpt = None,
    exact: ExactOpt = False,
    measure: MeasureOpt = False,
    interval: IntervalOpt = "30s",
    samples: SamplesOpt = 5,
    target: TargetOpt = None,
    as_json: AsJson = False,
) -> None:
    """Size the hot path with Little's law (L = λ·W), as the design's section 3 does."""
    from rich.console import Console

    from shopsentry.monitoring.capacity import scaling_plan

    settings = settings_of(ctx)
    capacity_plan = _plan(settings, rate, peak, stage or [], exact=exact)
    target_per_s = parse_rate(target) if target else None
    measured = None
    if measure:
        measured = _measure(
            urls or default_metrics_urls(settings),
            parse_duration(interval),
            samples,
            target_per_s or capacity_plan.peak_per_s,
            quiet=as_json,
        )
    scaling = None
    if target_per_s is not None and measured is None:
        scaling = scaling_plan(target_per_s, capacity_plan.per_worker_per_s)
    elif measured is not None:
        scaling = measured.scaling

    if as_json:
        out = {
            "plan": capacity_plan.to_dict(),
            "measured": measured.to_dict() if measured else None,
            "scaling": scaling.to_dict() if scaling else None,
        }
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    console = Console()
    _print_plan(console, capacity_plan)
    if measured is not None:
        _print_measured(console, capacity_plan, measured)
    if scaling is not None:
        _print_scaling(console, scaling)


def _plan(
    settings: Settings, rate: str | None, peak: str | None, stages: list[str], *, exact: bool
) -> CapacityPlan:
    """The design's plan for these settings, with the command line's rates and stages."""
    from shopsentry.monitoring.capacity import DESIGN_STAGES, merge_stages, parse_stage, plan

    load = settings.load
    return plan(
        parse_rate(rate) if rate else load.expected_per_hour / 3600.0,
        parse_rate(peak) if peak else load.peak_per_hour / 3600.0,
        merge_stages(DESIGN_STAGES, [parse_stage(s) for s in stages]),
        safety_factor=load.safety_factor,
        outage_s=load.outage_minutes * 60.0,
        partitions=settings.topics.purchase_events.partitions,
        min_workers=2,
        decimals=None if exact else 2,
    )


def _measure(
    urls: list[str], interval_s: float, samples: int, target_per_s: float, *, quiet: bool
) -> Measurement:
    from rich.progress import Progress

    from shopsentry.monitoring.measure import measure

    if quiet:
        return measure(urls, interval_s=interval_s, samples=samples, target_per_s=target_per_s)
    with Progress(transient=True) as progress:
        task = progress.add_task(
            f"measuring {len(urls)} endpoint(s) for {interval_s:g} s", total=samples
        )
        return measure(
            urls,
            interval_s=interval_s,
            samples=samples,
            target_per_s=target_per_s,
            on_sample=lambda done, _total: progress.update(task, completed=done),
        )


def _print_plan(console: Console, p: CapacityPlan) -> None:
    from rich.table import Table

    mode = "exact" if p.decimals is None else "λ and L rounded to 0.01 as in the design"
    table = Table(title=f"Little's law, L = λ·W ({mode})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("how")
    for row in p.rows():
        table.add_row(*row)
    console.print(table)


def _opt(value: float | None, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _print_measured(console: Console, p: CapacityPlan, m: Measurement) -> None:
    from rich.table import Table

    table = Table(
        title=f"Measured over {m.interval_s:.1f} s ({m.samples} scrapes, {m.workers} worker(s))"
    )
    table.add_column("quantity")
    table.add_column("measured", justify="right")
    table.add_column("planned", justify="right")
    table.add_row(
        "λ arrival",
        f"{m.arrival_per_s:,.3f}/s",
        f"{p.expected_per_s:g}/s normal, {p.peak_per_s:g}/s peak",
    )
    for topic, value in sorted(m.arrival_by_topic_per_s.items()):
        table.add_row(f"  λ {topic}", f"{value:,.3f}/s", "")
    planned = {s.name: s.ms for s in p.stages}
    for name, ms in m.stage_mean_ms.items():
        table.add_row(f"W stage {name}", f"{ms:,.2f} ms", _opt(planned.get(name), "g", " ms"))
    table.add_row(
        "W busy per event",
        _opt(m.busy_s_per_event and m.busy_s_per_event * 1000, ",.2f", " ms"),
        f"{p.w_s * 1000:g} ms",
    )
    table.add_row("events per batch", _opt(m.events_per_batch, ",.1f"), "")
    table.add_row(
        "W end-to-end (mean)",
        _opt(m.end_to_end_mean_s and m.end_to_end_mean_s * 1000, ",.1f", " ms"),
        "",
    )
    table.add_row(
        "prediction (mean)",
        _opt(m.prediction_mean_s and m.prediction_mean_s * 1000, ",.2f", " ms"),
        "",
    )
    table.add_row("L measured (in_flight_events)", _opt(m.l_measured, ",.3f"), "")
    table.add_row("λ·W busy", _opt(m.l_from_busy, ",.3f"), "")
    table.add_row("λ·W end-to-end", _opt(m.l_from_end_to_end, ",.3f"), "")
    table.add_row(
        "per-worker capacity", _opt(m.per_worker_per_s, ",.1f", "/s"), f"{p.per_worker_per_s:g}/s"
    )
    table.add_row("total capacity", _opt(m.capacity_per_s, ",.1f", "/s"), "")
    table.add_row("utilisation", _opt(m.utilisation and m.utilisation * 100, ",.2f", " %"), "")
    table.add_row("consumer lag", _opt(m.consumer_lag, ",.0f"), "< 1,000 (alert), > 10,000 (scale)")
    if m.target_per_s is not None:
        table.add_row("target", f"{m.target_per_s * 3600:,.0f}/h", "")
        table.add_row("headroom (capacity ÷ target)", _opt(m.headroom, ",.1f", "×"), "")
        table.add_row("workers for target", _opt(m.workers_for_target, "d"), "")
    console.print(table)
    for url, reason in m.unreachable.items():
        console.print(f"[yellow]not scraped[/] {url}: {reason}")
    for warning in m.warnings:
        console.print(f"[yellow]warning[/] {warning}")


def _print_scaling(console: Console, s: ScalingPlan) -> None:
    from rich.table import Table

    table = Table(
        title=f"Scaling to {s.target_per_h:,.0f}/h (the design's section 5; "
        f"{s.workers_needed} consumer(s) at "
        f"{s.per_worker_per_s * 3600:,.0f}/h each)"
    )
    for column in ("step", "load/h", "partitions", "brokers", "consumers", "warehouse", "action"):
        table.add_column(
            column,
            justify="right"
            if column in {"load/h", "partitions", "brokers", "consumers"}
            else "left",
        )
    for t in s.steps:
        table.add_row(
            t.label,
            f"{t.rate_per_h:,.0f}",
            str(t.partitions),
            str(t.brokers),
            str(t.consumers),
            t.warehouse,
            t.action,
        )
    console.print(table)
    for trigger in s.triggers:
        console.print(f"  trigger: {trigger}")
    for note in s.notes:
        console.print(f"[yellow]note[/] {note}")
