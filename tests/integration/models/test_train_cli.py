"""End to end on real parts: the simulator's history, the shared offline features,
XGBoost, MLflow: `shopsentry train --history DIR` then `shopsentry models list`."""

from __future__ import annotations

import json

import pytest

from shopsentry.models.scorer import ModelFiles

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_from_a_simulated_history(mlflow_settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from shopsentry.cli import app
    from shopsentry.models.scorer import champion_version, load_champion

    settings = mlflow_settings
    history = tmp_path / "history"
    monkeypatch.setenv("SHOPSENTRY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHOPSENTRY_MODEL__NAME", settings.model.name)
    monkeypatch.setenv("SHOPSENTRY_MODEL__EXPERIMENT", settings.model.experiment)
    monkeypatch.setenv("SHOPSENTRY_MODEL__TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    simulated = runner.invoke(
        app,
        [
            "simulate",
            "--users",
            "3000",
            "--days",
            "21",
            "--seed",
            "3",
            "--out",
            str(history),
            "--format",
            "parquet",
        ],
    )
    assert simulated.exit_code == 0, simulated.output
    trained = runner.invoke(app, ["train", "--history", str(history), "--trees", "60"])
    assert trained.exit_code == 0, trained.output
    assert "PR-AUC" in trained.output and "rules baseline" in trained.output
    assert "version 1 is champion" in trained.output
    assert champion_version(ModelFiles.from_settings(settings)) == "1"
    scorer = load_champion(ModelFiles.from_settings(settings))
    report = json.loads(
        (settings.data_dir / "models" / settings.model.name / "v1" / "report.json").read_text()
    )
    assert report["data"]["validation_fraud"] > 0
    assert report["model"]["pr_auc"] > report["baseline"]["pr_auc"]
    assert len(scorer.feature_names) == len(report["features"])

    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "champion" in listed.output

    bad = runner.invoke(app, ["train", "--history", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0
