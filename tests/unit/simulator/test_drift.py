"""Injected drift: purchases change from the given time on, and nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopsentry.errors import ConfigError
from shopsentry.simulator import Simulator, SimulatorConfig
from shopsentry.simulator.config import PURCHASE
from shopsentry.simulator.drift import DriftSpec, parse_drift

START = datetime(2026, 2, 2, tzinfo=UTC)
DRIFT_AT = START + timedelta(days=1)


def _frames(drift: DriftSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = {"users": 300, "start": START, "duration_s": 2 * 86400, "events_per_hour": None}
    plain = Simulator(SimulatorConfig(**base, seed=4))._build().cols  # type: ignore[arg-type]
    drifted = Simulator(SimulatorConfig(**base, seed=4, drift=drift))._build().cols  # type: ignore[arg-type]
    return plain, drifted


def test_an_amount_drift_multiplies_purchases_from_its_start_only() -> None:
    plain, drifted = _frames(DriftSpec("amount", DRIFT_AT, 3.0))
    assert np.array_equal(plain["ts"], drifted["ts"]) and np.array_equal(
        plain["fraud"], drifted["fraud"]
    )
    after = (plain["ts"] >= round(DRIFT_AT.timestamp() * 1e6)) & (plain["etype"] == PURCHASE)
    assert after.any() and (~after & (plain["etype"] == PURCHASE)).any()
    assert np.allclose(drifted["amount"][after], np.round(plain["amount"][after] * 3.0, 2))
    assert np.array_equal(drifted["amount"][~after], plain["amount"][~after])


def test_a_new_device_drift_moves_that_share_of_later_purchases_to_unseen_devices() -> None:
    plain, drifted = _frames(DriftSpec("new_device", DRIFT_AT, 0.5))
    after = (plain["ts"] >= round(DRIFT_AT.timestamp() * 1e6)) & (plain["etype"] == PURCHASE)
    changed = drifted["device"] != plain["device"]
    assert not changed[~after].any()
    assert changed[after].mean() == pytest.approx(0.5, abs=0.1)
    assert not np.isin(drifted["device"][changed], plain["device"]).any()


def test_drift_is_part_of_the_run_and_validated() -> None:
    spec = DriftSpec("amount", DRIFT_AT)
    plain = SimulatorConfig(start=START)
    assert SimulatorConfig(start=START, drift=spec).run_tag != plain.run_tag
    with pytest.raises(ConfigError, match="timezone"):
        DriftSpec("amount", DRIFT_AT.replace(tzinfo=None))
    with pytest.raises(ConfigError, match="does not fit"):
        DriftSpec("new_device", DRIFT_AT, 2.0)
    with pytest.raises(ConfigError, match="unknown drift kind"):
        parse_drift("currency", DRIFT_AT, None)
    assert parse_drift("new_device", DRIFT_AT, None).factor == 0.5
