"""Your own data in, end to end on real parts: a file in the common public layout
(transaction id, customer id, terminal id, time, amount, fraud flag) through
`shopsentry history import`, then `shopsentry train --history` on the result (the
shared offline features, XGBoost, MLflow), and the same directory loaded into the
warehouse's RAW layer as the `hourly_etl --history` backfill does."""

from __future__ import annotations

import json

import pytest

from shopsentry.models.scorer import ModelFiles
from tests.unit.warehouse.handbook import MAPPING, write_handbook_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_import_a_public_layout_file_and_train_on_it(mlflow_settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from shopsentry.cli import app
    from shopsentry.models.scorer import champion_version
    from shopsentry.warehouse.history import load_history

    settings = mlflow_settings
    monkeypatch.setenv("SHOPSENTRY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHOPSENTRY_MODEL__NAME", settings.model.name)
    monkeypatch.setenv("SHOPSENTRY_MODEL__EXPERIMENT", settings.model.experiment)
    monkeypatch.setenv("SHOPSENTRY_MODEL__TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("COLUMNS", "200")
    rows = write_handbook_csv(tmp_path / "transactions.csv", customers=300, days=40, seed=2)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        "[columns]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in MAPPING.items())
        + "[labels]\ndelay_days = 3\n"
    )
    history = tmp_path / "history"
    runner = CliRunner()
    imported = runner.invoke(
        app,
        [
            "history",
            "import",
            str(tmp_path / "transactions.csv"),
            "--out",
            str(history),
            "--mapping",
            str(mapping),
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert f"{len(rows):,} rows:" in imported.output

    trained = runner.invoke(app, ["train", "--history", str(history), "--trees", "60"])
    assert trained.exit_code == 0, trained.output
    assert "version 1 is champion" in trained.output, trained.output
    assert champion_version(ModelFiles.from_settings(settings)) == "1"
    report = json.loads(
        (settings.data_dir / "models" / settings.model.name / "v1" / "report.json").read_text()
    )
    fraud = sum(1 for r in rows if r[7] == 1)
    assert 0 < report["data"]["validation_fraud"] < fraud
    assert report["data"]["train_fraud_known_at_as_of"] > 0
    assert report["model"]["pr_auc"] > 0

    loaded = load_history(settings.warehouse_path, history)
    valid = sum(1 for r in rows if float(str(r[4])) > 0)  # 0.00 amounts are rejected
    assert loaded.inserted["purchase_events"] == valid
    labelled = sum(1 for r in rows if r[7] == 1 and float(str(r[4])) > 0)
    assert loaded.inserted["fraud_labels"] == labelled
    assert loaded.records_read == valid + labelled  # the rejects file is not in the directory
    assert (tmp_path / "history.rejects.jsonl").is_file()
