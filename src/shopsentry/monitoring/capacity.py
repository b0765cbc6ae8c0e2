"""Little's-law capacity planning: the design's section 3 as code, and its section 5
scaling steps for a target rate.

The design sizes the hot path by hand: λ from the hourly load, W as the sum of the stage
times, L = λ·W, a 5× buffer, per-worker capacity 1/W, workers for the peak, and the
queue a 20-minute consumer outage builds up. :func:`plan` redoes that arithmetic. By
default it rounds λ and L to two decimals before the next step uses them, as the design's
worked example does (0.83 × 1,200 = 996, not 1,000): that is what lets a reader check
the printed table against the document line by line. ``decimals=None`` keeps every
step exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from shopsentry.errors import ConfigError

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the hot path and the time an event spends in it."""

    name: str
    ms: float

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0


# The design, section 3, step 2 (Flow 1 without the 50 ms client hop, which is outside the system).
DESIGN_STAGES: tuple[Stage, ...] = (
    Stage("ingestion", 10.0),
    Stage("stream_processing", 100.0),
    Stage("ml_inference", 200.0),
    Stage("alert_routing", 10.0),
)


def parse_stage(text: str) -> Stage:
    """'ml_inference=150' → Stage('ml_inference', 150.0) (milliseconds)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    try:
        ms = float(value.strip().removesuffix("ms"))
    except ValueError:
        ms = -1.0
    if not sep or not name or not math.isfinite(ms) or ms < 0:
        raise ConfigError(
            f"bad stage {text!r}", hint="write it like ml_inference=200 (milliseconds)"
        )
    return Stage(name, ms)


def merge_stages(base: tuple[Stage, ...], overrides: list[Stage]) -> tuple[Stage, ...]:
    """The base stages with overrides replacing same-named ones; new names are appended."""
    by_name = {s.name: s for s in base}
    for stage in overrides:
        by_name[stage.name] = stage
    return tuple(by_name.values())


def round_up_nice(value: float, significant: int = 2) -> int:
    """Round up to ``significant`` significant figures: 996 → 1,000, 2,490 → 2,500.

    The design turns its computed queue depth into a round configuration value this way.
    """
    if value <= 0:
        return 0
    step = 10 ** max(0, math.floor(math.log10(value)) - significant + 1)
    return int(math.ceil(value / step) * step)


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """Every figure of the design's section-3 table for one load and one set of stage times."""

    expected_per_s: float
    peak_per_s: float
    stages: tuple[Stage, ...]
    w_s: float
    l_normal: float
    l_peak: float
    safety_factor: float
    l_buffered: float
    l_buffered_slots: int
    per_worker_per_s: float
    per_worker_per_h: float
    workers_needed: float
    workers_minimum: int
    workers_recommended: int
    outage_s: float
    queue_needed: float
    queue_recommended: int
    partitions: int
    partitions_recommended: int
    decimals: int | None
    expected_per_h: float
    peak_per_h: float

    def rows(self) -> list[tuple[str, str, str]]:
        """(quantity, value, how it was computed) in the order the design derives them."""
        f = _fmt
        stages = " + ".join(f"{s.ms:g}" for s in self.stages)
        return [
            (
                "λ normal",
                f"{f(self.expected_per_s)} events/s",
                f"{self.expected_per_h:,.0f}/h ÷ 3,600",
            ),
            ("λ peak", f"{f(self.peak_per_s)} events/s", f"{self.peak_per_h:,.0f}/h ÷ 3,600"),
            *[(f"W {s.name}", f"{s.ms:g} ms", "stage time") for s in self.stages],
            ("W end-to-end", f"{self.w_s * 1000:g} ms", f"{stages} ms"),
            ("L normal", f"{f(self.l_normal)} events", "λ normal × W"),
            ("L peak", f"{f(self.l_peak)} events", "λ peak × W"),
            (
                f"L with {self.safety_factor:g}× buffer",
                f"{f(self.l_buffered)} → {self.l_buffered_slots} events",
                f"L peak × {self.safety_factor:g}, rounded up",
            ),
            ("per-worker capacity", f"{self.per_worker_per_s:g} events/s", "1 ÷ W"),
            ("per-worker capacity", f"{self.per_worker_per_h:,.0f} events/h", "× 3,600"),
            (
                "workers for peak",
                f"{f(self.workers_needed)} → {self.workers_minimum}",
                "peak/h ÷ per-worker/h, rounded up",
            ),
            (
                "workers recommended",
                f"{self.workers_recommended}",
                "≥ 2 for redundancy and headroom",
            ),
            (
                f"queue for a {self.outage_s / 60:g}-min outage",
                f"{self.queue_needed:,.0f} → {self.queue_recommended:,} events",
                f"λ peak × {self.outage_s:,.0f} s, rounded up",
            ),
            (
                "partitions (purchase-events)",
                f"{self.partitions_recommended}",
                f"configured {self.partitions}; ≥ workers (one consumer per partition at most)",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {s.name: s.ms for s in self.stages}
        return data


def _fmt(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def plan(
    expected_per_s: float,
    peak_per_s: float,
    stages: tuple[Stage, ...] = DESIGN_STAGES,
    *,
    safety_factor: float = 5.0,
    outage_s: float = 1200.0,
    partitions: int = 3,
    min_workers: int = 2,
    decimals: int | None = 2,
) -> CapacityPlan:
    """Size the hot path for a normal and a peak arrival rate (events per second)."""
    if expected_per_s <= 0 or peak_per_s <= 0:
        raise ConfigError("rates must be positive", hint="pass --rate 1000/h --peak 3000/h")
    if not stages:
        raise ConfigError("no stages to add up", hint="keep the defaults or pass --stage name=ms")
    w_ms = sum(s.ms for s in stages)
    if w_ms <= 0:
        raise ConfigError(
            "the stage times add up to 0 ms", hint="pass --stage name=ms with a positive time"
        )

    def r(x: float) -> float:
        return round(x, decimals) if decimals is not None else x

    w_s = w_ms / 1000.0
    lam_n, lam_p = r(expected_per_s), r(peak_per_s)
    l_normal, l_peak = r(lam_n * w_s), r(lam_p * w_s)
    l_buffered = r(l_peak * safety_factor)
    per_worker = 1.0 / w_s
    # The design divides hourly rates here (3,000 ÷ 11,250), so the unrounded peak is used.
    workers_needed = peak_per_s / per_worker
    workers_minimum = max(1, math.ceil(round(workers_needed, 9)))
    workers_recommended = max(min_workers, workers_minimum)
    queue_needed = r(lam_p * outage_s)
    return CapacityPlan(
        expected_per_s=lam_n,
        peak_per_s=lam_p,
        stages=stages,
        w_s=w_s,
        l_normal=l_normal,
        l_peak=l_peak,
        safety_factor=safety_factor,
        l_buffered=l_buffered,
        l_buffered_slots=max(1, math.ceil(round(l_buffered, 9))),
        per_worker_per_s=per_worker,
        per_worker_per_h=per_worker * SECONDS_PER_HOUR,
        workers_needed=workers_needed,
        workers_minimum=workers_minimum,
        workers_recommended=workers_recommended,
        outage_s=outage_s,
        queue_needed=queue_needed,
        queue_recommended=round_up_nice(queue_needed),
        partitions=partitions,
        partitions_recommended=max(partitions, workers_recommended),
        decimals=decimals,
        expected_per_h=expected_per_s * SECONDS_PER_HOUR,
        peak_per_h=peak_per_s * SECONDS_PER_HOUR,
    )


# --- The design, section 5: the scaling path ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScaleTier:
    """One point of the design's load projections with the cluster it calls for."""

    label: str
    rate_per_h: float
    partitions: int
    brokers: int
    consumers: int
    warehouse: str
    action: str


SEED_TIERS: tuple[ScaleTier, ...] = (
    ScaleTier("month 1-3", 1_000, 3, 3, 2, "X-Small", "current setup"),
    ScaleTier(
        "month 4-6", 5_000, 6, 3, 4, "X-Small", "add Kafka partitions 3 → 6, consumers 2 → 4"
    ),
    ScaleTier("month 7-12", 15_000, 6, 5, 4, "Small", "add brokers 3 → 5, Snowflake XS → S"),
    ScaleTier(
        "year 2+",
        50_000,
        12,
        7,
        6,
        "Medium",
        "partitions 6 → 12, brokers 5 → 7, consumers 4 → 6, Snowflake S → M",
    ),
)
SEED_MAX_PER_H = 100_000.0  # "Max Capacity: 100,000 events/hour with 12 partitions"
SEED_TRIGGERS: tuple[str, ...] = (
    "Kafka: consumer lag > 10,000 → next partition/broker/consumer step",
    "Snowflake: query queue time > 30 s → next warehouse size (XS → S → M → L)",
    "Model serving: prediction latency p95 > 500 ms → more scoring capacity (1 → 2 → 4)",
)


@dataclass(frozen=True, slots=True)
class ScalingPlan:
    """The steps from today's cluster to one that carries ``target_per_s``."""

    target_per_s: float
    per_worker_per_s: float
    workers_needed: int
    steps: tuple[ScaleTier, ...]
    triggers: tuple[str, ...] = SEED_TRIGGERS
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def target_per_h(self) -> float:
        return self.target_per_s * SECONDS_PER_HOUR

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_per_h"] = self.target_per_h
        return data


def scaling_plan(
    target_per_s: float, per_worker_per_s: float, *, min_workers: int = 2
) -> ScalingPlan:
    """Walk the design's tiers up to the target rate, then check the consumer count against
    what the per-worker capacity says is needed (the design's tiers assume W = 320 ms; a
    measured W may need more or fewer consumers)."""
    if target_per_s <= 0 or per_worker_per_s <= 0:
        raise ConfigError(
            "target and per-worker capacity must be positive", hint="pass --target 50000/h"
        )
    target_h = target_per_s * SECONDS_PER_HOUR
    steps = [SEED_TIERS[0], *[t for t in SEED_TIERS[1:] if t.rate_per_h <= target_h]]
    workers_needed = max(min_workers, math.ceil(round(target_per_s / per_worker_per_s, 9)))
    notes: list[str] = []
    last = steps[-1]
    if workers_needed > last.consumers:
        partitions = max(last.partitions, workers_needed)
        steps.append(
            ScaleTier(
                "measured need",
                target_h,
                partitions,
                last.brokers,
                workers_needed,
                last.warehouse,
                f"consumers {last.consumers} → {workers_needed} (each handles "
                f"{per_worker_per_s * SECONDS_PER_HOUR:,.0f}/h), partitions ≥ consumers",
            )
        )
    if target_h > SEED_MAX_PER_H:
        notes.append(
            f"{target_h:,.0f}/h is past the design's ceiling of {SEED_MAX_PER_H:,.0f}/h"
            " with 12 partitions: "
            "plan partitions for the consumer count plus growth"
        )
    return ScalingPlan(
        target_per_s, per_worker_per_s, workers_needed, tuple(steps), notes=tuple(notes)
    )
