"""daily_fraud_report: one self-contained HTML page per day for the fraud team (06:00).

Reads the analytics layer read-only (alerts, confirmed fraud, precision from analyst
reviews, top scenarios, revenue, detection latency) for the report day and the two weeks
before it, draws the charts with matplotlib as inline SVG (no external files, no
JavaScript, opens from a mail attachment), and writes
``<reports_dir>/fraud-report-YYYY-MM-DD.html`` atomically.

The page depends only on the warehouse's contents: no wall-clock time, fixed SVG ids,
so rerunning the report for a day gives a byte-identical file.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.pipelines.common import Progress, no_progress

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

TREND_DAYS = 14
BUSY_WAIT_S = 120.0
TEMPLATE = "fraud_report.html.j2"
LATENCY_KEYS = (
    "detection_latency_avg_ms",
    "detection_latency_p50_ms",
    "detection_latency_p95_ms",
    "detection_latency_max_ms",
)
ACCELERATED = "n/a on an accelerated clock"


def real_clock_latency(trend: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with latency kept only where the event clock is the wall clock.

    Detection latency is ``decided_at`` (wall clock) minus the purchase's ``occurred_at``.
    On an accelerated clock (the simulator's ``--speed``) purchases occur in the wall
    clock's future, so the difference is negative and means nothing: such a day's latency
    figures are dropped and the row is marked ``clock_accelerated``. The detector's own
    end-to-end histogram (from the log's append time) measures it on any clock.
    """
    out = []
    for row in trend:
        median = row.get("detection_latency_p50_ms")
        if median is not None and median < 0:
            row = {**row, **dict.fromkeys(LATENCY_KEYS), "clock_accelerated": True}
        out.append(row)
    return out


@dataclass(frozen=True)
class ReportResult:
    day: date
    path: Path
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "path": str(self.path), "summary": self.summary}


# (trend, sales, scenarios, alerts, model quality and drift)
Reads = tuple[
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    dict[str, Any] | None,
]


def report_path(settings: Settings, day: date) -> Path:
    return settings.reports_dir / f"fraud-report-{day.isoformat()}.html"


def _svg(fig: Figure) -> str:
    """A figure as inline SVG without the date stamp, so reruns are identical."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _charts(trend: list[dict[str, Any]], scenarios: list[dict[str, Any]]) -> dict[str, str]:
    """The report's charts as inline SVG, keyed by the template's name for each."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "shopsentry-fraud-report"
    matplotlib.rcParams["svg.fonttype"] = "none"
    days = [r["day"].strftime("%m-%d") for r in trend]
    x = list(range(len(days)))
    return {
        "alerts": _alerts_chart(trend, x, days),
        "precision": _precision_chart(trend, x, days),
        "revenue": _revenue_chart(trend, x, days),
        "latency": _latency_chart(trend, x, days),
        "scenarios": _scenarios_chart(scenarios),
    }


def _day_figure() -> tuple[Figure, Axes]:
    """A wide, short figure for a per-day trend (the page's column width)."""
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7.5, 2.8))


def _finish_days(ax: Axes, x: list[int], days: list[str], title: str) -> None:
    """Day labels under the bars or points, the title and the legend of a trend chart."""
    ax.set_xticks(x, days, rotation=45, fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _nan_for_none(values: list[Any]) -> list[float]:
    """A day without a value is a gap in the line, not a zero."""
    return [v if v is not None else float("nan") for v in values]


def _alerts_chart(trend: list[dict[str, Any]], x: list[int], days: list[str]) -> str:
    fig, ax = _day_figure()
    width = 0.4
    ax.bar(
        [i - width / 2 for i in x],
        [r["alerts"] for r in trend],
        width,
        label="alerts",
        color="#d98c3a",
    )
    ax.bar(
        [i + width / 2 for i in x],
        [r["confirmed_fraud"] for r in trend],
        width,
        label="confirmed fraud",
        color="#b03a2e",
    )
    _finish_days(ax, x, days, "Alerts and confirmed fraud per day")
    return _svg(fig)


def _precision_chart(trend: list[dict[str, Any]], x: list[int], days: list[str]) -> str:
    fig, ax = _day_figure()
    precision = [r["review_precision"] for r in trend]
    fpr = [r["false_positive_rate"] for r in trend]
    ax.plot(x, _nan_for_none(precision), marker="o", label="precision (reviews)")
    ax.plot(x, _nan_for_none(fpr), marker="s", label="false-positive rate")
    ax.axhline(0.05, color="grey", linestyle="--", linewidth=1, label="FPR target 5%")
    ax.set_ylim(0, 1.05)
    _finish_days(ax, x, days, "Precision and false-positive rate from analyst reviews")
    return _svg(fig)


def _revenue_chart(trend: list[dict[str, Any]], x: list[int], days: list[str]) -> str:
    fig, ax = _day_figure()
    ax.bar(x, [r["revenue"] or 0 for r in trend], color="#2e86c1", label="revenue")
    ax.bar(x, [r["loss_prevented"] or 0 for r in trend], color="#28b463", label="loss prevented")
    _finish_days(ax, x, days, "Revenue and loss prevented per day")
    return _svg(fig)


def _latency_chart(trend: list[dict[str, Any]], x: list[int], days: list[str]) -> str:
    fig, ax = _day_figure()
    for key, label in (("detection_latency_p50_ms", "p50"), ("detection_latency_p95_ms", "p95")):
        ax.plot(x, _nan_for_none([r[key] for r in trend]), marker="o", label=label)
    ax.axhline(500, color="grey", linestyle="--", linewidth=1, label="SLO 500 ms")
    ax.set_ylabel("ms")
    _finish_days(ax, x, days, "Detection latency (purchase → decision)")
    return _svg(fig)


def _scenarios_chart(scenarios: list[dict[str, Any]]) -> str:
    """Horizontal bars, the top scenario on top; the height grows with the list."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, max(1.6, 0.4 * len(scenarios) + 0.8)))
    names = [s["scenario"] for s in reversed(scenarios)]
    ax.barh(
        names, [s["fraud_orders"] for s in reversed(scenarios)], color="#b03a2e", label="confirmed"
    )
    ax.barh(names, [s["detected"] for s in reversed(scenarios)], color="#28b463", label="detected")
    ax.set_title("Top fraud scenarios (last 7 days)")
    ax.legend(fontsize=8)
    return _svg(fig)


def _render(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("shopsentry.pipelines", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.1f}%"
    env.filters["money"] = lambda v: "–" if v is None else f"{v:,.2f}"
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:,.0f} ms"
    return env.get_template(TEMPLATE).render(**context)


def _read(settings: Settings, day: date, progress: Progress) -> Reads:
    from shopsentry.warehouse import queries

    warehouse = settings.warehouse_path
    progress("queries", 0, 4)
    trend = queries.fraud_kpis(warehouse, start=day - timedelta(days=TREND_DAYS - 1), end=day)
    progress("queries", 1, 4)
    sales = queries.daily_sales(warehouse, start=day, end=day)
    progress("queries", 2, 4)
    scenarios = queries.top_scenarios(warehouse, start=day - timedelta(days=6), end=day, limit=8)
    progress("queries", 3, 4)
    alerts = queries.alerts_on(warehouse, day, limit=25)
    progress("queries", 4, 4)
    return trend, sales, scenarios, alerts, model_ops_section(settings, day)


def _read_with_patience(settings: Settings, day: date, progress: Progress) -> Reads:
    """The report's queries, waiting out a running ETL (it holds DuckDB's only writer
    lock for seconds) instead of failing the task into a 5-minute Airflow retry."""
    import time

    from shopsentry.warehouse.db import WarehouseBusy

    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            return _read(settings, day, progress)
        except WarehouseBusy:
            if time.monotonic() >= deadline:
                raise
            logger.info("warehouse busy (an ETL is writing); retrying the report queries")
            time.sleep(2.0)


def model_ops_section(settings: Settings, day: date) -> dict[str, Any] | None:
    """The report's "Model quality and drift" section: both models' quality over the
    week up to ``day`` (with label maturity), champion vs challenger, and the day's
    drift. None while the warehouse has no monitoring tables (docs/model-ops.md)."""
    from shopsentry.warehouse import queries
    from shopsentry.warehouse.db import WarehouseError

    # A missing warehouse (WarehouseMissing) or a busy one (WarehouseBusy, waited out by
    # the caller) is not caught here: only tables that are not built yet.
    start = day - timedelta(days=6)
    warehouse = settings.warehouse_path
    try:
        section: dict[str, Any] = {
            "quality": queries.model_quality(warehouse, start=start, end=day),
            "comparison": queries.model_comparison(warehouse, start=start, end=day),
            "scores": queries.score_drift(warehouse, start=day, end=day),
        }
    except WarehouseError as exc:
        logger.info("report without model quality: %s", exc.one_line())
        return None
    try:
        drift = queries.feature_drift(warehouse, day=day)
    except WarehouseError:  # feature drift is built with the ML layer, maybe not yet
        drift = []
    limit = settings.modelops.top_features
    section["drift"] = drift[:limit]
    section["as_of"] = section["quality"][0]["as_of"] if section["quality"] else None
    section["thresholds"] = settings.modelops
    return section


def daily_fraud_report(
    settings: Settings, day: date | None = None, *, progress: Progress = no_progress
) -> ReportResult:
    """Write the report for ``day`` (default: yesterday, UTC) and return where it is."""
    from datetime import UTC, datetime

    from markupsafe import Markup

    day = day or (datetime.now(UTC).date() - timedelta(days=1))
    trend, sales, scenarios, alerts, model_ops = _read_with_patience(settings, day, progress)
    trend = real_clock_latency(trend)
    today = next((r for r in trend if r["day"] == day), None)
    progress("charts", 0, 1)
    charts = {k: Markup(v) for k, v in _charts(trend, scenarios).items()} if trend else {}  # noqa: S704 - our own SVG
    progress("charts", 1, 1)
    summary = {
        "orders": today["orders"] if today else 0,
        "alerts": today["alerts"] if today else 0,
        "alert_rate": today["alert_rate"] if today else None,
        "confirmed_fraud": today["confirmed_fraud"] if today else 0,
        "review_precision": today["review_precision"] if today else None,
        "false_positive_rate": today["false_positive_rate"] if today else None,
        "loss_prevented": today["loss_prevented"] if today else 0.0,
        "revenue": sales[0]["revenue"] if sales else 0.0,
        "detection_latency_p95_ms": today["detection_latency_p95_ms"] if today else None,
        "detection_latency_note": ACCELERATED if today and today.get("clock_accelerated") else None,
        "top_scenario": scenarios[0]["scenario"] if scenarios else None,
    }
    html = _render(
        {
            "day": day,
            "summary": summary,
            "today": today,
            "sales": sales[0] if sales else None,
            "trend": trend,
            "scenarios": scenarios,
            "alerts": alerts,
            "charts": charts,
            "fpr_target": settings.slo.false_positive_rate,
            "trend_days": TREND_DAYS,
            "model_ops": model_ops,
        }
    )
    path = report_path(settings, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    logger.info("daily fraud report for %s written to %s", day, path)
    return ReportResult(day=day, path=path, summary=summary)
