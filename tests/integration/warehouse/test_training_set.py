"""ml_features.training_set is the shared feature code's output, not a re-implementation:
for the same history its features equal ``shopsentry.features.offline_features``
computed directly (no training/serving skew through the warehouse), one row per valid
purchase, with the label and when it became known."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from shopsentry.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_training_set_equals_offline_features_of_the_same_history(settings, tmp_path: Path) -> None:
    from shopsentry.features import FEATURE_NAMES, offline_features
    from shopsentry.pipelines.hourly_etl import hourly_etl
    from shopsentry.pipelines.weekly_model_retrain import build_training_set

    history = tmp_path / "history"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("shopsentry")),
            "--data-dir", str(settings.data_dir),
            "simulate", "--days", "3", "--users", "120", "--fraud-share", "0.1", "--seed", "21",
            "--start", "2026-11-10", "--out", str(history),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hourly_etl(settings, history=history)
    rows = build_training_set(settings)

    from shopsentry.features.offline import known_labels

    # the same labels, each from its known_at (no reviews in this history)
    truth = known_labels(pq.read_table(history / "labels.parquet"))
    direct = offline_features(history / "events.parquet", labels=truth)
    assert rows == len(direct.event_ids)
    with connect(settings.warehouse_path, read_only=True) as con:
        names = ", ".join(f'"{n}"' for n in FEATURE_NAMES)
        table = con.execute(
            f"select event_id, is_fraud, label_known_at, {names} from ml_features.training_set"
        ).fetchall()
    by_id = {r[0]: r for r in table}
    order = [by_id[e] for e in direct.event_ids]
    warehouse_x = np.array(
        [[np.nan if v is None else v for v in r[3:]] for r in order], dtype=np.float32
    )
    np.testing.assert_array_equal(warehouse_x, direct.X.astype(np.float32))

    labels = pq.read_table(history / "labels.parquet").to_pylist()
    fraud = {x["event_id"]: x for x in labels if x["is_fraud"]}
    assert {r[0] for r in table if r[1]} == set(fraud)
    some = next(iter(fraud))
    assert by_id[some][2] == fraud[some]["known_at"].replace(tzinfo=None)
