"""The registry's challenger on live traffic, on the embedded backend with real worker
processes: in shadow every decision carries the challenger's score and the champion
still decides; clearing the alias stops the shadow scoring without a restart; in split
mode the challenger decides for exactly its users."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import ChallengerSettings, Settings
from shopsentry.detection.challenger import in_challenger_share
from shopsentry.events.schema import Decision, band_for
from shopsentry.models.scorer import CHALLENGER, ModelFiles, clear_pointer, write_pointer

from .conftest import (
    Champion,
    events_processed,
    free_port,
    metric,
    produce,
    promote,
    scrape,
    simulator,
    wait_for,
)
from .test_detector import _safe, decisions_of, records_of, run_supervisor

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_challenger(settings: Settings, champion: Champion, tmp_path: Path, version: str) -> None:
    """A second, bolder model (the champion's margin + 2.5), pointed at as challenger."""
    from shopsentry.models.training import fold_calibration

    raw = fold_calibration(champion.model_path.read_bytes(), 1.0, 2.5)
    path = tmp_path / f"challenger-v{version}.json"
    path.write_bytes(raw)
    write_pointer(
        ModelFiles.from_settings(settings),
        settings.model.name,
        version,
        path,
        hashlib.sha256(raw).hexdigest(),
        champion.feature_names,
        alias=CHALLENGER,
    )


def with_mode(settings: Settings, mode: str, share: float = 0.5) -> Settings:
    challenger = ChallengerSettings(mode=mode, share=share)  # type: ignore[arg-type]
    detector = settings.detector.model_copy(update={"challenger": challenger})
    return settings.model_copy(update={"detector": detector})


def own_band(d: Decision, probability: float) -> str:
    return band_for(probability, d.threshold, 0.95)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_shadow_then_cleared_then_split(
    backend: Settings, champion: Champion, tmp_path: Path
) -> None:
    settings = backend
    promote(settings, champion, "1")
    make_challenger(settings, champion, tmp_path, "2")
    rows = list(records_of(simulator(days=1), settings))
    third = len(rows) // 3
    phases = [rows[:third], rows[third : 2 * third], rows[2 * third :]]
    purchases = [{r[6] for r in phase if r[4] == "purchase"} for phase in phases]
    log = open_log(BusConfig.from_settings(settings))
    port = free_port()

    def processed() -> float:
        return events_processed(settings, port)

    supervisor = run_supervisor(settings, 1, metrics_port=port)
    try:
        produce(log, ((t, k, v) for t, k, v, *_ in phases[0]))
        wait_for(lambda: _safe(processed) >= len(phases[0]), 240, "phase 1 to be processed")
        wait_for(
            lambda: (
                metric(scrape(port), "shopsentry_challenger_scored_total ") >= len(purchases[0])
            ),
            60,
            "the challenger's scores to be counted",
        )
        text = scrape(port)
        assert metric(text, 'shopsentry_challenger_version_info{version="2"}') == 1
        assert metric(text, "shopsentry_challenger_scored_total ") == len(purchases[0])
        clear_pointer(
            ModelFiles.from_settings(settings), CHALLENGER
        )  # the alias cleared (or promoted away)
        wait_for(
            lambda: 'shopsentry_challenger_version_info{version="2"}' not in scrape(port),
            60,
            "the worker to drop the challenger",
        )
        produce(log, ((t, k, v) for t, k, v, *_ in phases[1]))
        wait_for(
            lambda: _safe(processed) >= len(phases[0]) + len(phases[1]),
            240,
            "phase 2 to be processed",
        )
    finally:
        supervisor.stop()
        supervisor.wait(timeout=60)
    by_id = {d.event_id: d for d in decisions_of(settings)}
    shadowed = [by_id[e] for e in purchases[0]]
    assert all(
        d.challenger_version == "2"
        and d.challenger_probability is not None
        and d.challenger_band == own_band(d, d.challenger_probability)
        and d.served_by == "champion"
        and d.model_version == "1"
        and d.band == d.model_band == own_band(d, d.probability)  # the champion decided
        for d in shadowed
    )
    assert sum(d.challenger_probability > d.probability for d in shadowed) > 0.9 * len(shadowed)  # type: ignore[operator]
    after = [by_id[e] for e in purchases[1]]
    assert all(d.challenger_version is None and d.challenger_probability is None for d in after)

    split = with_mode(settings, "split", share=0.5)
    make_challenger(split, champion, tmp_path, "3")
    supervisor = run_supervisor(split, 1, metrics_port=port)
    try:
        produce(log, ((t, k, v) for t, k, v, *_ in phases[2]))
        wait_for(
            lambda: (
                len(purchases[2] & {d.event_id for d in decisions_of(split)}) == len(purchases[2])
            ),
            240,
            "a decision for every phase-3 purchase",
        )
        served = metric(scrape(port), "shopsentry_challenger_served_total ")
    finally:
        supervisor.stop()
        supervisor.wait(timeout=60)
        log.close()
    salt = split.detector.challenger.salt
    last = [d for d in decisions_of(split) if d.event_id in purchases[2]]
    mine = [d for d in last if in_challenger_share(d.user_id, 0.5, salt)]
    theirs = [d for d in last if not in_challenger_share(d.user_id, 0.5, salt)]
    assert mine and theirs
    assert all(d.served_by == "challenger" and d.model_band == d.challenger_band for d in mine)
    assert all(
        d.served_by == "champion" and d.model_band == own_band(d, d.probability) for d in theirs
    )
    assert all(d.challenger_version == "3" and d.model_version == "1" for d in last)
    assert served == len(mine)


def register_versions(settings: Settings, files: list[bytes]) -> None:
    """Register each model file as the next version of ``settings.model.name`` in the
    real (SQLite) MLflow registry, its model.json where the registry keeps it locally."""
    from mlflow import MlflowClient

    from shopsentry.models.registry import RegistryConfig, version_dir

    mlc = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    mlc.create_registered_model(settings.model.name)
    for raw in files:
        staging = settings.data_dir / "incoming" / hashlib.sha256(raw).hexdigest()[:12]
        staging.mkdir(parents=True)
        (staging / "model.json").write_bytes(raw)
        version = mlc.create_model_version(settings.model.name, source=staging.as_uri())
        target = version_dir(RegistryConfig.from_settings(settings), str(version.version))
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.json").write_bytes(raw)


def rollback(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`shopsentry models rollback` as a user runs it (its own process, one line out)."""
    env = {
        **os.environ,
        "SHOPSENTRY_DATA_DIR": str(settings.data_dir),
        "SHOPSENTRY_MODEL__NAME": settings.model.name,
        "SHOPSENTRY_MODEL__TRACKING_URI": settings.mlflow_tracking_uri,
    }
    return subprocess.run(
        [sys.executable, "-m", "shopsentry", "models", "rollback"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_rollback_is_picked_up_by_a_running_worker(
    backend: Settings, champion: Champion, mlflow_tracking_uri: str
) -> None:
    from shopsentry.config import ModelSettings
    from shopsentry.models import registry
    from shopsentry.models.training import fold_calibration

    settings = backend.model_copy(
        update={
            "model": ModelSettings(
                name=f"rollback-{backend.detector.group_id[-8:]}", tracking_uri=mlflow_tracking_uri
            )
        }
    )
    raw = champion.model_path.read_bytes()
    register_versions(settings, [raw, fold_calibration(raw, 1.0, 2.5)])
    registry.promote(registry.RegistryConfig.from_settings(settings), "1")
    registry.promote(
        registry.RegistryConfig.from_settings(settings), "2"
    )  # the champion history is now 1, 2
    rows = list(records_of(simulator(days=1), settings))
    half = len(rows) // 2
    port = free_port()
    log = open_log(BusConfig.from_settings(settings))
    supervisor = run_supervisor(settings, 1, metrics_port=port)
    try:

        def processed() -> float:
            return events_processed(settings, port)

        produce(log, ((t, k, v) for t, k, v, *_ in rows[:half]))
        wait_for(lambda: _safe(processed) >= half, 240, "the first half to be processed")
        done = rollback(settings)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines() == [
            f"rolled back: version 1 is champion of {settings.model.name} again"
        ]
        wait_for(
            lambda: metric(scrape(port), 'shopsentry_model_version_info{version="1"}') == 1,
            60,
            "the worker to serve version 1 again",
        )
        produce(log, ((t, k, v) for t, k, v, *_ in rows[half:]))
        purchases = {r[6] for r in rows if r[4] == "purchase"}
        wait_for(
            lambda: {d.event_id for d in decisions_of(settings)} >= purchases,
            240,
            "a decision for every purchase",
        )
        again = rollback(settings)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=60)
        log.close()
    assert again.returncode == 1 and "no previous champion" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1  # one line, no traceback
    by_id = {d.event_id: d for d in decisions_of(settings)}
    first = {r[6] for r in rows[:half] if r[4] == "purchase"}
    second = {r[6] for r in rows[half:] if r[4] == "purchase"}
    assert {by_id[e].model_version for e in first} == {"2"}
    assert {by_id[e].model_version for e in second} == {"1"}
