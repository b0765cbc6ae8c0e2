"""Injected drift: from a given simulated time on, purchases stop looking like history.

Two kinds, for exercising the drift monitoring (docs/model-ops.md, "Drift"):

- ``amount``: every purchase amount from ``start`` on is multiplied by ``factor`` (a
  shift in the amount mix: a new premium catalogue, a currency change upstream);
- ``new_device``: a share ``factor`` of the purchases from ``start`` on come from a
  device never seen before (a new app build or device type that resets fingerprints).

Only purchases change: behaviour events, fraud and labels are as without drift, so the
model's inputs drift while the truth does not. The change is applied to the columnar
frame after generation, deterministically from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from shopsentry.errors import ConfigError
from shopsentry.simulator.config import PURCHASE, US
from shopsentry.simulator.frame import Frame
from shopsentry.simulator.population import new_ids

DriftKind = Literal["amount", "new_device"]
DRIFT_KINDS: tuple[str, ...] = ("amount", "new_device")


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """What drifts (``kind``), from when (``start``, timezone-aware) and by how much."""

    kind: DriftKind
    start: datetime
    factor: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ConfigError(
                f"unknown drift kind {self.kind!r}", hint=f"use one of {', '.join(DRIFT_KINDS)}"
            )
        if self.start.tzinfo is None:
            raise ConfigError(
                "drift start must carry a timezone", hint="write it like 2026-01-05T00:00:00Z"
            )
        if self.factor <= 0 or (self.kind == "new_device" and self.factor > 1):
            raise ConfigError(
                f"drift factor {self.factor} does not fit {self.kind}",
                hint="amount: a multiplier > 0 (e.g. 3); new_device: a share in (0, 1]",
            )

    @property
    def start_us(self) -> int:
        return round(self.start.timestamp() * US)


def inject(frame: Frame, drift: DriftSpec, rng: np.random.Generator) -> Frame:
    """The frame with ``drift`` applied to its purchases from ``drift.start`` on."""
    c = {k: v.copy() for k, v in frame.cols.items()}
    hit = (c["ts"] >= drift.start_us) & (c["etype"] == PURCHASE)
    if drift.kind == "amount":
        c["amount"][hit] = np.round(c["amount"][hit] * drift.factor, 2)
    else:
        chosen = np.flatnonzero(hit)
        chosen = chosen[rng.random(chosen.size) < drift.factor]
        c["device"][chosen] = new_ids(rng, chosen.size)
    return Frame(c)


def parse_drift(text: str, start: datetime, factor: float | None) -> DriftSpec:
    """``--drift KIND`` with ``--drift-from`` and ``--drift-factor`` into a spec."""
    if text not in DRIFT_KINDS:
        raise ConfigError(
            f"unknown drift kind {text!r}", hint=f"use --drift {' or --drift '.join(DRIFT_KINDS)}"
        )
    default = 3.0 if text == "amount" else 0.5
    return DriftSpec(kind=text, start=start, factor=factor if factor is not None else default)  # type: ignore[arg-type]
