"""The live gate against a real MLflow registry and a DuckDB warehouse: refused (and
explained) while too few labels have matured, promoted once they show the challenger
more precise at the champion's recall; the verdict is in the version's tags and card,
and the detectors' pointers move with the aliases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopsentry.models.scorer import ModelFiles, challenger_version, champion_version
from shopsentry.models.training import TrainingConfig, train_on
from tests.unit.models.test_live_gate import decisions, maturity, staging_tables

from .test_registry import GOOD, WEAK, synthetic_history

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = datetime(2026, 11, 30, tzinfo=UTC)


def live_week(
    settings, champion: str, challenger: str, frauds_known: int, label_maturity: float = 0.9
) -> None:
    """2,000 purchases both scored on one day of ``label_maturity`` at AS_OF; 60 frauds,
    of which ``frauds_known`` are labelled by AS_OF. The champion catches 40 at 0.7 along
    with 40 legitimate ones; the challenger ranks the same 40 above only 10 legitimate
    ones."""
    from shopsentry.warehouse.db import connect

    n = 2000
    rng = np.random.default_rng(4)
    fraud = np.zeros(n, dtype=bool)
    fraud[:60] = True
    champ = rng.uniform(0.0, 0.5, n)
    champ[:40] = 0.8
    champ[100:140] = 0.9
    chall = rng.uniform(0.0, 0.4, n)
    chall[:40] = 0.6
    chall[100:110] = 0.7
    decided = datetime(2026, 11, 20, 12)
    with connect(settings.warehouse_path) as con:
        staging_tables(con)
        decisions(
            con,
            [
                (f"e{i}", champion, float(champ[i]), challenger, float(chall[i]), decided)
                for i in range(n)
            ],
        )
        maturity(con, {decided.date(): label_maturity}, AS_OF)
        con.executemany(
            "insert into staging.stg_fraud_labels values (?, ?, ?)",
            [
                (f"e{i}", True, decided + timedelta(days=3 if i < frauds_known else 40))
                for i in range(60)
            ],
        )


def test_refused_without_matured_labels_then_promoted_on_live_evidence(mlflow_settings) -> None:
    from mlflow import MlflowClient

    from shopsentry.models.live_gate import LiveGateConfig, apply_live_gate
    from shopsentry.models.registry import RegistryConfig, version_dir

    settings = mlflow_settings
    assert settings.model.live_gate.min_labelled_frauds == 30
    gate = LiveGateConfig.from_settings(settings)
    data = synthetic_history(n=12000, seed=5)
    assert train_on(TrainingConfig.from_settings(settings), data, params=GOOD).version == "1"
    second = train_on(TrainingConfig.from_settings(settings), data, params=WEAK)
    assert not second.promoted and second.version == "2"
    assert (
        challenger_version(ModelFiles.from_settings(settings)) == "2"
    )  # the detectors start scoring it

    live_week(settings, "1", "2", frauds_known=20)
    refused = apply_live_gate(gate, AS_OF)
    assert refused is not None and not refused.promote
    assert refused.reason.startswith("not enough matured labels: 20 labelled frauds")
    assert (
        champion_version(ModelFiles.from_settings(settings)) == "1"
        and challenger_version(ModelFiles.from_settings(settings)) == "2"
    )
    mlc = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.model.name
    tags = mlc.get_model_version(name, "2").tags
    assert tags["live_gate_promoted"] == "false" and "not enough" in tags["live_gate_reason"]
    card = (version_dir(RegistryConfig.from_settings(settings), "2") / "model_card.md").read_text()
    assert "## Live evidence" in card and "not promoted: not enough matured labels" in card

    # Every label known, but on a day whose chargebacks are mostly still to come.
    live_week(settings, "1", "2", frauds_known=60, label_maturity=0.5)
    immature = apply_live_gate(gate, AS_OF)
    assert immature is not None and not immature.promote
    assert immature.reason.startswith("not enough matured labels: 0 labelled frauds")
    assert "no matured window (0 of 1 days with label maturity >= 0.8)" in immature.reason
    assert "no matured window" in mlc.get_model_version(name, "2").tags["live_gate_reason"]

    live_week(settings, "1", "2", frauds_known=60)
    promoted = apply_live_gate(gate, AS_OF)
    assert promoted is not None and promoted.promote, promoted
    assert promoted.champion_precision == pytest.approx(0.5)
    assert promoted.challenger_precision == pytest.approx(0.8)
    assert str(mlc.get_model_version_by_alias(name, "champion").version) == "2"
    assert (
        champion_version(ModelFiles.from_settings(settings)) == "2"
        and challenger_version(ModelFiles.from_settings(settings)) is None
    )
    assert (
        "live evidence: better live precision"
        in (mlc.get_model_version(name, "2").tags["promotion_reason"])
    )
    card = (version_dir(RegistryConfig.from_settings(settings), "2") / "model_card.md").read_text()
    assert "promoted to champion: better live precision" in card
    assert "matured window 2026-11-20..2026-11-20 (1 of 1 days with label maturity" in card
    assert (
        "2,000 purchases both scored on the days 2026-11-20..2026-11-20 whose label maturity"
        " is >= 0.8 (of 2,000 on all days), 60 labelled frauds known by then." in card
    )
    assert promoted.window_first == promoted.window_last == "2026-11-20"
    assert "| this version | 66.7% | 80.0% |" in card
    assert apply_live_gate(gate, AS_OF) is None  # no challenger left to judge
