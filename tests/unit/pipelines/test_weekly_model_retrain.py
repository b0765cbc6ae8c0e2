"""The weekly retrain judges the live challenger before training the new version, and
its result (and the marker a rerun reuses) carries that verdict."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from shopsentry.config import LiveGateSettings, ModelSettings, Settings
from shopsentry.models.live_gate import LiveGateConfig, LiveVerdict
from shopsentry.models.training import TrainResult

# The package re-exports the job function under the module's name.
job = importlib.import_module("shopsentry.pipelines.weekly_model_retrain")

AS_OF = datetime(2026, 11, 29, 2, tzinfo=UTC)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    order: list[str] = []

    def gate(
        config: LiveGateConfig, as_of: datetime | None, *, refresh: Callable[[datetime], object]
    ) -> LiveVerdict:
        assert isinstance(config, LiveGateConfig)  # the job passes the narrow config
        order.append("live gate")
        refresh(datetime(2026, 11, 29, tzinfo=UTC))  # as if the maturity was stale
        return LiveVerdict(False, "not enough matured labels", 100, 3, challenger_version="4")

    def monitoring(settings: Settings, as_of: datetime | None, *, drift: bool) -> None:
        order.append(f"monitoring as of {as_of:%Y-%m-%d %H:%M}, drift={drift}")

    def train(settings: Settings, **kwargs: Any) -> TrainResult:
        order.append("train")
        return TrainResult(version="5", promoted=False, reason="does not beat", metrics={})

    monkeypatch.setattr("shopsentry.models.live_gate.apply_live_gate", gate)
    monkeypatch.setattr("shopsentry.models.training.train_and_register", train)
    monkeypatch.setattr("shopsentry.pipelines.model_monitoring.model_monitoring", monitoring)
    return order


def test_the_live_verdict_comes_first_and_is_recorded(tmp_path, calls: list[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    result = job.train(settings, AS_OF)
    # The gate's refresh rebuilds the monitoring models (without feature drift).
    monitored = "monitoring as of 2026-11-29 00:00, drift=False"
    assert calls == ["live gate", monitored, "train"]
    assert result.live_gate is not None and result.live_gate["challenger_version"] == "4"
    assert result.live_gate["reason"] == "not enough matured labels"
    marker = next((tmp_path / "state" / "retrain").glob("*.json"))
    assert json.loads(marker.read_text())["live_gate"]["promote"] is False
    again = job.train(settings, AS_OF)
    assert again.reused and again.live_gate == result.live_gate
    assert calls == ["live gate", monitored, "train"]


def test_a_disabled_live_gate_is_skipped(tmp_path, calls: list[str]) -> None:
    settings = Settings(
        data_dir=tmp_path, model=ModelSettings(live_gate=LiveGateSettings(enabled=False))
    )
    assert job.train(settings, AS_OF).live_gate is None and calls == ["train"]


def test_a_challenger_with_too_few_matured_labels_keeps_its_place_for_a_few_weeks(
    tmp_path, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chargebacks take weeks: a challenger the gate could not judge (3 labelled frauds
    on matured days, 30 needed) is kept while its labels mature, at most
    ``max_weeks_kept`` retrains; then, or once judged, the week's version replaces it."""
    kept: list[str | None] = []

    def train(settings: Settings, **kwargs: Any) -> TrainResult:
        kept.append(kwargs.get("keep_challenger"))
        return TrainResult(version="5", promoted=False, reason="does not beat", metrics={})

    monkeypatch.setattr("shopsentry.models.training.train_and_register", train)
    settings = Settings(
        data_dir=tmp_path, model=ModelSettings(live_gate=LiveGateSettings(max_weeks_kept=2))
    )
    for week in (0, 0, 1, 2, 3):  # the first week's run retried: it counts once
        job.train(settings, AS_OF.replace(day=1 + 7 * week), force=True)
    assert kept == ["4", "4", "4", None, None]
    judged = {"promote": False, "labelled_frauds": 45, "challenger_version": "4"}
    assert job.challenger_to_keep(settings, judged, AS_OF) is None  # judged: not better
    thin = {**judged, "labelled_frauds": 3, "challenger_version": "6"}
    assert job.challenger_to_keep(settings, thin, AS_OF) == "6"  # a new challenger's own count
    assert job.challenger_to_keep(settings, {**thin, "promote": True}, AS_OF) is None
    assert job.challenger_to_keep(settings, None, AS_OF) is None
