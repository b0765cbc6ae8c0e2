"""Traffic simulator: a population of customers, their web / mobile / POS traffic,
labelled fraud scenarios (with hard cases on both sides) and late, out-of-band labels.

    from shopsentry.simulator import SimulatorConfig, Simulator, write_history, publish

    sim = Simulator(SimulatorConfig(users=20_000, start=..., duration_s=30 * 86400,
                                    events_per_hour=None, seed=7))
    for event in sim.events(): ...        # pydantic models, in occurred_at order
    sim.labels()                          # list[Label], known_at mostly 1-30 days later
    write_history(sim, "data/history", fmt="parquet")   # events.parquet + labels.parquet
    publish(sim, log, topics)             # purchases → purchase-events, behaviour → user-behavior

FRAUD_SCENARIOS names every labelled scenario; ENTITY_SCENARIOS those that only the
entities (terminal, devices / IPs / addresses, cards shared across accounts) give away,
and SHARED_ENTITY_CASES their honest twins (see docs/entities.md).
"""

from shopsentry.simulator.config import FRAUD_SCENARIOS, LEGIT_CASES, SimulatorConfig
from shopsentry.simulator.core import RenderedEvent, Simulator
from shopsentry.simulator.output import HistoryFiles, publish, publish_labels, write_history
from shopsentry.simulator.rings import ENTITY_SCENARIOS, SHARED_ENTITY_CASES

__all__ = [
    "ENTITY_SCENARIOS",
    "FRAUD_SCENARIOS",
    "LEGIT_CASES",
    "SHARED_ENTITY_CASES",
    "HistoryFiles",
    "RenderedEvent",
    "Simulator",
    "SimulatorConfig",
    "publish",
    "publish_labels",
    "write_history",
]
