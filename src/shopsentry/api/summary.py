"""Aggregates for the dashboard, computed from the alert store.

The store already holds every decision and alert the detector produced, so the charts
(events per minute, decisions by band, latency p95, fraud rate, false-positive rate)
come from one indexed file instead of scraping each worker. Series are per minute over
a window that ends at the newest minute of data and starts no earlier than the
data, so a replay, an accelerated simulator clock or a fresh start draws a chart that
fills its width; the minute still in progress is drawn at its pace so far.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shopsentry.api.read_model import AlertFilter, AlertReadModel
from shopsentry.api.reasons import explain_alert

BANDS = ("approve", "review", "decline")
# The minute in progress is scaled to a per-minute pace once this much of it has passed
# (earlier, a handful of events would extrapolate wildly).
_MIN_ELAPSED_S = 15.0


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (what Prometheus' histogram_quantile approximates)."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


def _data_minutes(store: AlertReadModel) -> tuple[int, int] | None:
    """The first and last minute holding traffic or decisions, or None when empty."""
    first, last = store.query(
        "select min(lo), max(hi) from ("
        " select min(minute) as lo, max(minute) as hi from traffic"
        " union all select min(decided_ms) / 60000, max(decided_ms) / 60000 from decisions)"
    )[0]
    return None if last is None else (int(first), int(last))


def chart_window(store: AlertReadModel, window_minutes: int, now: float) -> tuple[int, int]:
    """The minutes to draw: at most ``window_minutes`` ending at the newest data, and
    starting no earlier than the data (a fixed window would squeeze a few minutes of
    data into its right edge)."""
    bounds = _data_minutes(store)
    if bounds is None:
        return int(now // 60), int(now // 60)
    first, last = bounds
    return max(first, last - window_minutes + 1), last


def _per_minute(counts: list[int], minutes: list[int], now: float) -> list[float]:
    """Counts per minute, the minute in progress at the pace it has so far: counted as
    it stands, it would read as traffic falling off at the last point."""
    rates = [float(c) for c in counts]
    if minutes and minutes[-1] == int(now // 60):
        elapsed = max(now - minutes[-1] * 60, _MIN_ELAPSED_S)
        rates[-1] = round(rates[-1] * 60 / elapsed, 1)
    return rates


def minute_series(
    store: AlertReadModel, window_minutes: int, now: float | None = None
) -> dict[str, Any]:
    """Per-minute series over the window: x in epoch seconds (what uPlot plots)."""
    now = time.time() if now is None else now
    start, end = chart_window(store, window_minutes, now)
    minutes = list(range(start, end + 1))
    index = {m: i for i, m in enumerate(minutes)}
    n = len(minutes)

    traffic: dict[str, list[int]] = {kind: [0] * n for kind in ("purchases", "behavior")}
    kind_of = {name: kind for kind, name in store.topics.items()}
    for minute, topic, count in store.query(
        "select minute, topic, count from traffic where minute >= ? and minute <= ?", [start, end]
    ):
        kind = kind_of.get(topic)
        if kind in traffic:
            traffic[kind][index[minute]] += int(count)

    bands: dict[str, list[int]] = {band: [0] * n for band in BANDS}
    latencies: dict[int, list[float]] = defaultdict(list)
    for minute, band, e2e in store.query(
        "select decided_ms / 60000, band, e2e_ms from decisions"
        " where decided_ms >= ? and decided_ms < ?",
        [start * 60_000, (end + 1) * 60_000],
    ):
        i = index[int(minute)]
        if band in bands:
            bands[band][i] += 1
        if e2e is not None:
            latencies[i].append(float(e2e))
    decided = [sum(bands[b][i] for b in BANDS) for i in range(n)]
    flagged = [bands["review"][i] + bands["decline"][i] for i in range(n)]

    return {
        "t": [m * 60 for m in minutes],
        "events_per_minute": {k: _per_minute(v, minutes, now) for k, v in traffic.items()},
        "decisions_by_band": {k: _per_minute(v, minutes, now) for k, v in bands.items()},
        "latency_p95_ms": [p95(latencies[i]) for i in range(n)],
        "fraud_rate": [(flagged[i] / decided[i]) if decided[i] else None for i in range(n)],
        "false_positive_rate": _fp_rate_series(store, start, end, index),
    }


def _fp_rate_series(
    store: AlertReadModel, start: int, end: int, index: dict[int, int]
) -> list[float | None]:
    """Cumulative false-positive rate as reviews arrive (null before the first review)."""
    before = dict(
        store.query(
            "select verdict, count(*) from alerts"
            " where reviewed_ms < ? and verdict is not null group by verdict",
            [start * 60_000],
        )
    )
    fp, reviewed = int(before.get("false_positive", 0)), sum(int(v) for v in before.values())
    per_minute: dict[int, tuple[int, int]] = {}
    for minute, fps, total in store.query(
        "select reviewed_ms / 60000, sum(verdict = 'false_positive'), count(*) from alerts"
        " where reviewed_ms >= ? and reviewed_ms < ? group by reviewed_ms / 60000",
        [start * 60_000, (end + 1) * 60_000],
    ):
        per_minute[int(minute)] = (int(fps), int(total))
    series: list[float | None] = []
    for minute in sorted(index):
        add_fp, add_total = per_minute.get(minute, (0, 0))
        fp += add_fp
        reviewed += add_total
        series.append(fp / reviewed if reviewed else None)
    return series


def totals(store: AlertReadModel) -> dict[str, Any]:
    (decisions, flagged) = store.query(
        "select count(*), coalesce(sum(band != 'approve'), 0) from decisions"
    )[0]
    recent = [
        r[0]
        for r in store.query("select e2e_ms from decisions order by decided_ms desc limit 1000")
    ]
    stats = store.review_stats()
    return {
        "decisions": int(decisions),
        "flagged": int(flagged),
        "fraud_rate": (int(flagged) / int(decisions)) if decisions else None,
        "latency_p95_ms": p95([float(v) for v in recent if v is not None]),
        **{
            k: stats[k] for k in ("alerts", "open", "reviewed", "confirmed_fraud", "false_positive")
        },
        "false_positive_rate": stats["false_positive_rate"],
    }


def stream_daily_sales(store: AlertReadModel, days: int) -> list[dict[str, Any]]:
    """Daily sales from the purchases the store saw (used until the warehouse is built)."""
    latest = store.query("select max(occurred_ms) from purchases")[0][0]
    if latest is None:
        return []
    last_day = datetime.fromtimestamp(latest / 1000, tz=UTC).date()
    first_day = last_day - timedelta(days=days - 1)
    start_ms = int(
        datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp() * 1000
    )
    rows = store.query(
        "select occurred_ms / 86400000, count(*), sum(amount) from purchases"
        " where occurred_ms >= ? group by occurred_ms / 86400000 order by 1",
        [start_ms],
    )
    epoch = date(1970, 1, 1)
    return [
        {"day": epoch + timedelta(days=int(d)), "orders": int(n), "revenue": float(total)}
        for d, n, total in rows
    ]


def alert_queue(store: AlertReadModel, limit: int = 25) -> list[dict[str, Any]]:
    items, _, _ = store.list_alerts(AlertFilter(status="open"), limit=limit)
    reviewed, _, _ = store.list_alerts(AlertFilter(status="reviewed"), limit=5)
    return [explain_alert(a, store.event_of(a["event_id"])) for a in items + reviewed]
