"""What `shopsentry demo` reports at the end: the detector workers' own metrics (read
from their /metrics endpoints, as Prometheus would) and the simulator's ground truth
joined with the decisions in the warehouse."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shopsentry.config import Settings


def detector_stats(urls: list[str], target_ms: float) -> dict[str, str]:
    """Throughput, bands, alerts and end-to-end latency p95 summed over the workers."""
    from shopsentry.monitoring.metrics_reader import scrape_all

    scrapes, _failed = scrape_all(urls, timeout=2.0)
    if not scrapes:
        return {}
    bands: dict[str, float] = {}
    buckets: dict[float, float] = {}
    processed = alerts = dead = 0.0
    for sc in scrapes:
        processed += sc.total("events_processed_total")
        alerts += sc.total("alerts_total")
        dead += sc.total("dead_letter_total")
        for band, n in sc.by_label("decisions_total", "band").items():
            bands[band] = bands.get(band, 0.0) + n
        for le, n in sc.by_label("end_to_end_latency_seconds_bucket", "le").items():
            bound = float(le)
            buckets[bound] = buckets.get(bound, 0.0) + n
    stats = {
        "events processed": f"{processed:,.0f}",
        "decisions by band": ", ".join(f"{b} {n:,.0f}" for b, n in sorted(bands.items())),
        "fraud alerts": f"{alerts:,.0f}",
        "dead-lettered events": f"{dead:,.0f}",
    }
    p95 = histogram_quantile(0.95, buckets)
    stats["end-to-end latency p95"] = (
        f"{p95 * 1000:.0f} ms (target {target_ms:.0f} ms)"
        if p95 is not None
        else "none measured yet (no purchase decided)"
    )
    return stats


def fraud_caught(settings: Settings, since: datetime) -> dict[str, str]:
    """Per the simulator's ground truth: how much of the live fraud the detector flagged."""
    from shopsentry.errors import ShopsentryError
    from shopsentry.warehouse.queries import run_query

    try:
        rows = run_query(
            settings,
            """select count(*) as fraud,
                      count(*) filter (where d.band <> 'approve') as caught
               from staging.stg_decisions d
               join staging.stg_fraud_labels l using (event_id)
               where l.is_fraud and d.decided_at >= ?""",
            [since],
        )
    except ShopsentryError as exc:
        return {"fraud caught": f"unknown ({exc.one_line()})"}
    fraud, caught = int(rows[0]["fraud"] or 0), int(rows[0]["caught"] or 0)
    share = f" ({caught / fraud:.0%})" if fraud else ""
    return {"fraud caught (simulator truth)": f"{caught} of {fraud}{share}"}


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper bound: count}."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, count
    return lower
