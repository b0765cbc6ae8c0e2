"""MLflow registry and the promotion gate on a real (SQLite-backed) MLflow.

The data is synthetic (the same shape as the real training set, the real feature
names), so the gate's behaviour is what is tested here: better → champion, worse →
challenger with the reason, manual promote, rollback, and refusal of a corrupted model
with the previous champion still serving.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopsentry.errors import ModelError
from shopsentry.models.dataset import TrainingSet, to_datetime64
from shopsentry.models.scorer import (
    champion_version,
    current_feature_names,
    load_champion,
)
from shopsentry.models.training import TrainingConfig, TrainParams, train_on

pytestmark = pytest.mark.integration
START = datetime(2026, 10, 1, tzinfo=UTC)


def names() -> tuple[str, ...]:
    return current_feature_names() or tuple(f"feat_{i}" for i in range(12))


def synthetic_history(n: int = 30000, days: int = 21, seed: int = 0) -> TrainingSet:
    feature_names = names()
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(feature_names))).astype(np.float32)
    logit = 2.5 * X[:, 0] + 2.0 * X[:, 1] * X[:, 2] - 1.5 * np.abs(X[:, 3]) - 5.0
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    X[rng.random(X.shape) < 0.05] = np.nan
    offsets = np.sort(rng.uniform(0, days * 86400, n))
    occurred = np.array([to_datetime64(START + timedelta(seconds=float(s))) for s in offsets])
    known = np.where(y, occurred + np.timedelta64(86400, "s"), np.datetime64("NaT"))
    ids = np.array([f"ev-{i}" for i in range(n)], dtype=object)
    return TrainingSet(
        feature_names=feature_names,
        event_ids=ids,
        user_ids=ids.copy(),
        order_ids=ids.copy(),
        occurred_at=occurred.astype("datetime64[ns]"),
        amounts=np.ones(n),
        X=X,
        is_fraud=y,
        scenario=np.where(y, np.where(X[:, 0] > 1, "stolen_card", "account_takeover"), None).astype(
            object
        ),
        label_known_at=known.astype("datetime64[ns]"),
        source="synthetic",
    )


GOOD = TrainParams(n_estimators=60, max_depth=5, early_stopping_rounds=15, nthread=1)
WEAK = TrainParams(n_estimators=10, max_depth=1, early_stopping_rounds=5, nthread=1)


@pytest.mark.slow
def test_gate_promote_rollback_and_bad_files(mlflow_settings):
    from mlflow import MlflowClient

    from shopsentry.models import registry

    settings = mlflow_settings
    config = registry.RegistryConfig.from_settings(settings)
    files = config.files
    data = synthetic_history()
    first = train_on(TrainingConfig.from_settings(settings), data, params=GOOD)
    assert first.promoted and first.version == "1" and first.reason == "no champion yet"
    assert champion_version(files) == "1"
    assert load_champion(files, data.feature_names).version == "1"
    card = (first.model_dir / "model_card.md").read_text()
    assert "## Recall per fraud scenario" in card and "stolen_card" in card
    assert (first.model_dir / "precision_recall.png").stat().st_size > 1000

    weaker = train_on(TrainingConfig.from_settings(settings), data, params=WEAK)
    assert not weaker.promoted and weaker.version == "2"
    assert "does not beat champion v1" in weaker.reason
    assert champion_version(files) == "1"  # the detector keeps serving v1
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.model.name
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    assert "does not beat" in client.get_model_version(name, "2").tags["challenger_reason"]
    report = json.loads((weaker.model_dir / "report.json").read_text())
    assert report["gate"]["champion_version"] == "1"
    # the champion was re-scored on the new window: its PR-AUC there beats the challenger's
    assert report["gate"]["champion"]["pr_auc"] > report["model"]["pr_auc"]
    # the weekly retrain keeps a live challenger whose labels are still maturing
    third = train_on(TrainingConfig.from_settings(settings), data, params=WEAK, keep_challenger="2")
    assert not third.promoted and third.version == "3"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    assert "v2 keeps its place" in client.get_model_version(name, "3").tags["challenger_reason"]

    registry.promote(config, "2")
    assert champion_version(files) == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"

    assert registry.rollback(config) == "1"
    assert champion_version(files) == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert "rolled_back_at" in client.get_model_version(name, "2").tags
    with pytest.raises(ModelError, match="no previous champion"):
        registry.rollback(config)

    # a corrupted file cannot be promoted; alias and pointer stay on v1
    model_file = registry.version_dir(config, "2") / "model.json"
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(ModelError):
        registry.promote(config, "2")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert champion_version(files) == "1"

    with pytest.raises(ModelError, match="no version 99"):
        registry.promote(config, "99")

    listed = {v.version: v for v in registry.list_versions(config)}
    # the listing reads the SQLite registry directly; MLflow's client agrees with it
    assert list(listed.values()) == registry._versions_from_mlflow(config)
    assert listed["1"].aliases == ("champion",)
    assert listed["1"].metrics["pr_auc"] == pytest.approx(first.metrics["pr_auc"])
    assert "baseline_pr_auc" in listed["2"].metrics


def test_models_cli_lists_and_promotes(mlflow_settings, monkeypatch):
    from typer.testing import CliRunner

    from shopsentry.cli import app

    settings = mlflow_settings
    train_on(
        TrainingConfig.from_settings(settings), synthetic_history(n=12000, seed=3), params=WEAK
    )
    monkeypatch.setenv("SHOPSENTRY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHOPSENTRY_MODEL__NAME", settings.model.name)
    monkeypatch.setenv("SHOPSENTRY_MODEL__TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.output and "no champion yet" in listed.output
    missing = runner.invoke(app, ["models", "promote", "7"])
    assert missing.exit_code != 0
