"""What `shopsentry demo` reports at the end: the detector workers' own metrics (read
from their /metrics endpoints, as Prometheus would) and the simulator's ground truth
joined with the decisions, both read from the log (no warehouse load to wait for)."""

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
    """Per the simulator's ground truth: how much of the live fraud the detector flagged.

    Read from the log — the decisions topic joined with the labels the simulator
    published — not from the warehouse, so the summary needs no final load and comes
    within seconds of a Ctrl-C. Analysts' reviews are not ground truth: left out."""
    import orjson

    from shopsentry.bus import BusConfig, open_log
    from shopsentry.bus.reading import read_to_end
    from shopsentry.errors import ShopsentryError

    try:
        log = open_log(BusConfig.from_settings(settings))
        try:
            fraud = set()
            for record in read_to_end(log, settings.topics.labels.name):
                label = orjson.loads(record.value)
                if label.get("is_fraud") and label.get("label_source") != "review":
                    fraud.add(label["event_id"])
            bands: dict[str, str] = {}
            for record in read_to_end(log, settings.topics.decisions.name):
                decision = orjson.loads(record.value)
                if datetime.fromisoformat(decision["decided_at"]) >= since:
                    bands[decision["event_id"]] = decision["band"]
        finally:
            log.close()
    except ShopsentryError as exc:
        return {"fraud caught": f"unknown ({exc.one_line()})"}
    decided = [bands[e] for e in fraud if e in bands]
    caught = sum(band != "approve" for band in decided)
    share = f" ({caught / len(decided):.0%})" if decided else ""
    return {"fraud caught (simulator truth)": f"{caught} of {len(decided)}{share}"}


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
