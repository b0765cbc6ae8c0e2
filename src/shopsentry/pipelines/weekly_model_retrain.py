"""weekly_model_retrain: training set → train → evaluate → promote through the gate.

The design's Flow 3 (Sundays 02:00). Two steps, separate Airflow tasks:

1. :func:`build_training_set` runs ``dbt build --select +tag:ml``: the incremental
   layers catch up, then ``ml_features.training_set`` is rebuilt from the shared feature
   definitions (point-in-time) and tested.
2. :func:`train` first judges the live challenger (the registry's ``challenger``
   alias, scored beside the champion in production) on the purchases both scored on
   days whose labels have matured, with the labels known by ``as_of``
   (:mod:`shopsentry.models.live_gate`; the monitoring models are rebuilt as of it for
   the days' label maturity): with enough matured labels and better precision at the
   champion's recall it becomes champion;
   either way the run log and its model card say why. Then it calls the model part's
   ``train_and_register``, which trains on labels known at ``as_of``, evaluates on the
   held-out last days, registers the version in MLflow and promotes it to champion only
   if it beats the (possibly new) champion at the offline gate; otherwise the new
   version becomes the challenger that the detectors score next week.

A finished run records its outcome under ``state_dir/retrain/<as_of>.json``; rerunning
the same week returns that outcome instead of registering a second model, and a run that
failed part-way (nothing recorded) simply runs again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.pipelines.common import Progress, no_progress

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

ML_SELECTION = [
    "--select",
    "+tag:ml",
    "--exclude-resource-type",
    "unit_test",
    # Tests that also reference a model outside the selection (e.g. relationships to
    # dim_customers) wait for hourly_etl, so a retrain works on a freshly loaded RAW.
    "--indirect-selection",
    "cautious",
]


@dataclass
class RetrainResult:
    as_of: str | None
    training_rows: int
    version: str | None
    promoted: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    # The live gate's verdict on last week's challenger (None: nothing to judge).
    live_gate: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _marker(settings: Settings, as_of: datetime | None) -> Path | None:
    if as_of is None:
        return None
    return settings.state_dir / "retrain" / f"{as_of.strftime('%Y%m%dT%H%M%S')}.json"


def build_training_set(settings: Settings, *, progress: Progress = no_progress) -> int:
    """Step 1: rebuild ml_features.training_set; returns its row count."""
    from shopsentry.pipelines.hourly_etl import transform
    from shopsentry.warehouse.db import connect

    transform(settings, select=ML_SELECTION, progress=progress)
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute("select count(*) from ml_features.training_set").fetchall()
    return int(rows[0][0])


def train(
    settings: Settings,
    as_of: datetime | None,
    *,
    training_rows: int = 0,
    force: bool = False,
    progress: Progress = no_progress,
) -> RetrainResult:
    """Step 2: train, evaluate and gate, once per ``as_of`` unless ``force``."""
    from shopsentry.models.training import TrainingConfig, train_and_register

    marker = _marker(settings, as_of)
    if marker is not None and marker.is_file() and not force:
        recorded = json.loads(marker.read_text())
        logger.info(
            "weekly retrain for %s already ran (version %s); reusing",
            as_of,
            recorded.get("version"),
        )
        return RetrainResult(**{**recorded, "reused": True})
    live = judge_live_challenger(settings, as_of)
    outcome = train_and_register(
        TrainingConfig.from_settings(settings),
        use_warehouse=True,
        as_of=as_of,
        progress=lambda step, done, total: progress(step, done, total),
        keep_challenger=challenger_to_keep(settings, live, as_of),
    )
    result = RetrainResult(
        as_of=as_of.isoformat() if as_of else None,
        training_rows=training_rows,
        version=outcome.version,
        promoted=outcome.promoted,
        reason=outcome.reason,
        metrics=dict(outcome.metrics),
        live_gate=live,
    )
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({k: v for k, v in result.as_dict().items() if k != "reused"}, indent=2)
        )
        os.replace(tmp, marker)
    logger.info(
        "weekly retrain: version %s %s (%s)",
        result.version,
        "promoted" if result.promoted else "kept as challenger",
        result.reason,
    )
    return result


def judge_live_challenger(settings: Settings, as_of: datetime | None) -> dict[str, Any] | None:
    """The live gate (``model.live_gate``) on the current challenger; its verdict or None."""
    if not settings.model.live_gate.enabled:
        return None
    from shopsentry.models.live_gate import LiveGateConfig, apply_live_gate
    from shopsentry.pipelines.model_monitoring import model_monitoring

    # The days' label maturity must be as of the gate's time: the monitoring models
    # (without feature drift) are rebuilt as of it when the warehouse has them at another.
    verdict = apply_live_gate(
        LiveGateConfig.from_settings(settings),
        as_of or datetime.now(UTC),
        refresh=lambda at: model_monitoring(settings, at, drift=False),
    )
    if verdict is None:
        return None
    logger.info(
        "weekly retrain: live challenger v%s %s (%s)",
        verdict.challenger_version,
        "promoted" if verdict.promote else "not promoted",
        verdict.reason,
    )
    return verdict.as_dict()


def challenger_to_keep(
    settings: Settings, live: dict[str, Any] | None, as_of: datetime | None
) -> str | None:
    """The live challenger's version when it keeps its place this week: the gate had too
    few labelled frauds on matured days to judge it (chargebacks take weeks), and it has
    been kept for fewer than ``model.live_gate.max_weeks_kept`` retrains. Otherwise None:
    it was judged (promoted, or not better), or has waited long enough, and the week's
    new version may replace it. The weeks are kept in ``state_dir/retrain/kept.json``,
    by ``as_of``, so a retried run of the same week counts once."""
    gate = settings.model.live_gate
    if live is None or live["promote"] or live["labelled_frauds"] >= gate.min_labelled_frauds:
        return None
    version = str(live["challenger_version"])
    week = as_of.isoformat() if as_of else "latest"
    path = settings.state_dir / "retrain" / "kept.json"
    kept: dict[str, list[str]] = json.loads(path.read_text()) if path.is_file() else {}
    weeks = kept.setdefault(version, [])
    if week not in weeks:
        if len(weeks) >= gate.max_weeks_kept:
            logger.info("live challenger v%s was kept %d weeks: replaced", version, len(weeks))
            return None
        weeks.append(week)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, path)
    logger.info(
        "live challenger v%s keeps its place (week %d of at most %d) while its labels mature",
        version,
        weeks.index(week) + 1,
        gate.max_weeks_kept,
    )
    return version


def weekly_model_retrain(
    settings: Settings,
    as_of: datetime | None = None,
    *,
    force: bool = False,
    progress: Progress = no_progress,
) -> RetrainResult:
    """Both steps; ``as_of`` is the training cut-off (the run's data-interval end)."""
    marker = _marker(settings, as_of)
    if marker is not None and marker.is_file() and not force:
        return train(settings, as_of, progress=progress)
    rows = build_training_set(settings, progress=progress)
    return train(settings, as_of, training_rows=rows, force=force, progress=progress)
