"""The training set from the warehouse's ML_FEATURES layer (a real DuckDB file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from shopsentry.errors import TrainingDataError
from shopsentry.features import FEATURE_NAMES
from shopsentry.models.dataset import build_training_set, warehouse_has_training_set

START = datetime(2026, 11, 1)


def write_warehouse(path, n=200, drop_feature=None):
    rng = np.random.default_rng(0)
    occurred = [START + timedelta(minutes=30 * i) for i in range(n)]
    fraud = rng.random(n) < 0.1
    columns = {
        "event_id": [f"ev-{i}" for i in range(n)],
        "user_id": [f"u-{i % 17}" for i in range(n)],
        "order_id": [f"o-{i}" for i in range(n)],
        "amount": rng.uniform(1, 500, n),
        "occurred_at": pa.array(occurred, pa.timestamp("us")),
    }
    for j, name in enumerate(FEATURE_NAMES):
        if name not in columns and name != drop_feature:
            values = rng.normal(size=n) + j
            values[rng.random(n) < 0.1] = np.nan
            columns[name] = pa.array(values, pa.float64(), from_pandas=True)
    columns["is_fraud"] = fraud
    columns["scenario"] = [("stolen_card" if f else None) for f in fraud]
    columns["label_known_at"] = pa.array(
        [o + timedelta(days=3) if f else None for o, f in zip(occurred, fraud, strict=True)],
        pa.timestamp("us"),
    )
    with duckdb.connect(str(path)) as con:
        con.register("staged", pa.table(columns))
        con.execute("create schema ml_features")
        con.execute("create table ml_features.training_set as select * from staged")
    return occurred, fraud, columns


def test_reads_the_warehouse_training_set_in_feature_order(settings):
    settings.data_dir.mkdir(parents=True)
    occurred, fraud, columns = write_warehouse(settings.warehouse_path)
    assert warehouse_has_training_set(settings.warehouse_path)
    data = build_training_set(settings.warehouse_path)  # no history given: the warehouse is used
    assert data.source.startswith("warehouse:")
    assert data.feature_names == FEATURE_NAMES and data.X.shape == (200, len(FEATURE_NAMES))
    amount = FEATURE_NAMES.index("amount")
    np.testing.assert_allclose(data.X[:, amount], np.asarray(columns["amount"], np.float32))
    other = next(
        i for i, name in enumerate(FEATURE_NAMES) if name not in columns or name == "hour_of_day"
    )
    expected = np.asarray(columns[FEATURE_NAMES[other]].to_numpy(zero_copy_only=False), np.float32)
    np.testing.assert_array_equal(np.isnan(data.X[:, other]), np.isnan(expected))
    assert data.is_fraud.tolist() == fraud.tolist()
    as_of = datetime(2026, 11, 4, tzinfo=UTC)
    known = data.known_labels(as_of)
    assert (
        known.sum() < fraud.sum()
        and known.sum() == (fraud & (np.array(occurred) <= datetime(2026, 11, 1))).sum()
    )
    cut = build_training_set(settings.warehouse_path, as_of=as_of)
    assert len(cut) == sum(o <= datetime(2026, 11, 4) for o in occurred)


def test_missing_warehouse_without_history_is_a_clear_error(settings):
    assert not warehouse_has_training_set(settings.warehouse_path)
    with pytest.raises(TrainingDataError, match="no training data"):
        build_training_set(settings.warehouse_path)
    with pytest.raises(TrainingDataError, match=r"has no ml_features\.training_set"):
        build_training_set(settings.warehouse_path, use_warehouse=True)


def test_warehouse_built_with_other_features_is_refused(settings):
    settings.data_dir.mkdir(parents=True)
    write_warehouse(settings.warehouse_path, drop_feature=FEATURE_NAMES[-1])
    with pytest.raises(TrainingDataError, match="lacks features"):
        build_training_set(settings.warehouse_path)
