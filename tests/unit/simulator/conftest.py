from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shopsentry.simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="module")
def wide_history() -> Simulator:
    """Two weeks of 6,000 users with a high fraud share: long enough for compromised
    terminals (days to weeks) and big enough that every scenario and hard case shows up,
    rings included."""
    return Simulator(
        SimulatorConfig(
            users=6000,
            start=datetime(2026, 3, 2, tzinfo=UTC),
            duration_s=14 * 86400,
            events_per_hour=None,
            fraud_share=0.12,
            seed=21,
        )
    )
