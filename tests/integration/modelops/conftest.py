"""A simulated week of live traffic over a trained champion and a registered challenger,
built once per module: the model-ops tests read the warehouse it leaves behind."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shopsentry.config import Settings
from shopsentry.models.training import TrainingConfig

START = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 21
LIVE_DAYS = 7
DRIFT_FROM = START + timedelta(days=HISTORY_DAYS + 3)  # mid-week
AS_OF = START + timedelta(days=HISTORY_DAYS + LIVE_DAYS)
SIM = {"users": 2500, "seed": 13, "fraud_share": 0.04}


@dataclass(frozen=True)
class Week:
    settings: Settings
    champion: str
    challenger: str
    as_of: datetime
    purchases: int
    frauds: int  # eventual fraud among the live week's purchases


def _settings(root: Path, tracking_uri: str) -> Settings:
    """The week's settings. Two model-ops settings differ from the defaults, for reasons
    of the simulator: its population is closed (nobody signs up or leaves), so every
    purchaser's ``account_age_days`` is a week older a week later, a drift by
    construction that a real population does not have; and a 28-day history has no
    purchase 30 days old, so mature days for the chargeback-delay distribution are
    those 14 days old."""
    from shopsentry.config import ModelOpsSettings, ModelSettings

    unique = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=root / "data",
        log_fsync="never",
        log_session_timeout_ms=2000,
        model=ModelSettings(
            name=f"modelops-{unique}",
            experiment=f"modelops-{unique}",
            tracking_uri=tracking_uri,
            validation_days=7,
        ),
        detector={"group_id": f"fraud-detector-{unique}", "model_poll_interval_s": 0.3},
        modelops=ModelOpsSettings(
            drift_excluded_features=("day_of_week", "account_age_days"), label_maturity_days=14
        ),
    )


def _drained(settings: Settings, group: str, expected: int) -> bool:
    """Whether ``group`` committed everything on its topics, at least ``expected``."""
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        lags = log.group_lag(group)
    finally:
        log.close()
    return all(p.lag == 0 for p in lags) and sum(p.committed or 0 for p in lags) >= expected


def _apply_labels(settings: Settings, labels: int) -> None:
    """Run the detector until its label consumer has applied ``labels`` labels."""
    from shopsentry.detection.runner import Supervisor
    from shopsentry.detection.worker import WorkerOptions
    from shopsentry.features.entity_labels import label_group
    from tests.integration.ops.airflow_server import wait_for

    supervisor = Supervisor(settings, 1, WorkerOptions(exit_when_idle_s=8.0))
    supervisor.start()
    try:
        wait_for(
            lambda: _drained(settings, label_group(settings.detector.group_id), labels),
            "the label consumer to apply every label",
            600,
        )
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)


def _detect_everything(settings: Settings, expected: int) -> None:
    """Run one real detector worker over the log until it has decided every purchase."""
    from shopsentry.detection.runner import Supervisor
    from shopsentry.detection.worker import WorkerOptions

    supervisor = Supervisor(settings, 1, WorkerOptions(exit_when_idle_s=8.0))
    supervisor.start()
    try:
        statuses = supervisor.wait(timeout=900)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
    assert [s.exitcode for s in statuses] == [0], statuses
    assert _drained(settings, settings.detector.group_id, expected)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory, mlflow_tracking_uri: str) -> Week:
    """History → champion and challenger → a week scored live → warehouse as of its end.

    The week's amounts triple from mid-week on (``DRIFT_FROM``); labels are applied
    before the events, each counting from its ``known_at``, and the warehouse counts
    only those known by ``AS_OF``.
    """
    from shopsentry.bus import BusConfig, open_log, topic_specs
    from shopsentry.models.training import TrainParams, train_and_register
    from shopsentry.pipelines.hourly_etl import hourly_etl
    from shopsentry.pipelines.model_monitoring import model_monitoring
    from shopsentry.simulator import (
        Simulator,
        SimulatorConfig,
        publish,
        publish_labels,
        write_history,
    )
    from shopsentry.simulator.drift import DriftSpec

    root = tmp_path_factory.mktemp("modelops-week")
    settings = _settings(root, mlflow_tracking_uri)
    sim = Simulator(
        SimulatorConfig(
            start=START,
            duration_s=(HISTORY_DAYS + LIVE_DAYS) * 86400,
            events_per_hour=None,
            drift=DriftSpec("amount", DRIFT_FROM, 3.0),
            **SIM,  # type: ignore[arg-type]
        )
    )
    history = root / "history"
    write_history(sim, history)
    trained_until = START + timedelta(days=HISTORY_DAYS)
    champion = train_and_register(
        TrainingConfig.from_settings(settings), history=history, as_of=trained_until
    )
    assert champion.promoted, champion.reason
    # A deliberately weaker model: the gate keeps it as the challenger.
    weak = TrainParams(n_estimators=25, max_depth=2, nthread=settings.model.nthread, seed=5)
    challenger = train_and_register(
        TrainingConfig.from_settings(settings), history=history, as_of=trained_until, params=weak
    )
    assert not challenger.promoted, challenger.reason
    assert champion.version and challenger.version

    # Labels first, applied before any event: the label consumer holds each one back
    # until its known_at, so every purchase sees the labels known at its time, as the
    # point-in-time training rows (and the reference) do. Published after the events,
    # they would reach no live decision: the entity fraud features would read 0 online.
    log = open_log(BusConfig.from_settings(settings))
    try:
        log.create_topics(topic_specs(settings.topics))
        labels = publish_labels(sim, log, settings.topics)
    finally:
        log.close()
    _apply_labels(settings, labels)
    log = open_log(BusConfig.from_settings(settings))
    try:
        published = publish(sim, log, settings.topics, labels=False)
    finally:
        log.close()
    _detect_everything(settings, published.events)
    hourly_etl(settings)
    model_monitoring(settings, AS_OF, drift=True)
    labels = [x for x in sim.labels() if x.is_fraud and x.occurred_at >= trained_until]
    return Week(
        settings=settings,
        champion=champion.version,
        challenger=challenger.version,
        as_of=AS_OF,
        purchases=published.purchases,
        frauds=len(labels),
    )
