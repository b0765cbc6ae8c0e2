"""The training reference drift is measured against: quantile bins, missing shares,
the model's own score, and importance ranks from the model's gain."""

from __future__ import annotations

import numpy as np
import pytest

from shopsentry.config import ModelOpsSettings, Settings
from shopsentry.models.dataset import TrainingSet
from shopsentry.models.drift_reference import bin_values, build_reference, gain_shares, psi
from tests.unit.models.conftest import FEATURES, synthetic, train_raw


def test_bins_hold_about_equal_shares_of_a_continuous_feature() -> None:
    values = np.random.default_rng(1).lognormal(3.0, 1.0, 10_000)
    edges, shares, missing = bin_values(values, 10)
    assert len(edges) == 9 and len(shares) == 10 and missing == 0.0
    assert edges == sorted(edges)
    assert shares == pytest.approx([0.1] * 10, abs=0.01)


def test_a_flag_gets_one_bin_per_value_and_nan_counts_as_missing() -> None:
    values = np.array([0.0] * 80 + [1.0] * 15 + [np.nan] * 5)
    edges, shares, missing = bin_values(values, 10)
    assert edges == [1.0]  # [min, 1) holds the zeros, [1, inf) the ones
    assert shares == pytest.approx([80 / 95, 15 / 95])
    assert missing == pytest.approx(0.05)


def test_a_constant_or_all_missing_feature_has_a_single_bin() -> None:
    assert bin_values(np.full(50, 7.0), 10) == ([], [1.0], 0.0)
    assert bin_values(np.full(4, np.nan), 10) == ([], [1.0], 1.0)


def test_psi_is_zero_for_the_same_mix_and_large_for_a_shift() -> None:
    base = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(base, base) == 0.0
    assert psi(base, np.array([0.2, 0.25, 0.25, 0.3])) < 0.1
    assert psi(base, np.array([0.0, 0.0, 0.2, 0.8])) > 0.2  # an empty bin stays finite


class _Probabilities:
    """A stand-in score: the first feature, squashed into [0, 1]."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-np.nan_to_num(X[:, 0]).astype(np.float64)))


def _training_set(X: np.ndarray, y: np.ndarray) -> TrainingSet:
    n = len(y)
    ids = np.array([f"e{i}" for i in range(n)], dtype=object)
    return TrainingSet(
        feature_names=FEATURES,
        event_ids=ids,
        user_ids=ids,
        order_ids=ids,
        occurred_at=np.datetime64("2026-01-01") + np.arange(n).astype("timedelta64[m]"),
        amounts=np.ones(n),
        X=X,
        is_fraud=y,
        scenario=np.full(n, None, dtype=object),
        label_known_at=np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]"),
        source="synthetic",
    )


def test_the_reference_ranks_features_by_gain_and_leaves_out_excluded_ones() -> None:
    X, y = synthetic(3000, seed=4)
    raw = train_raw(X, y, rounds=20, depth=3)
    settings = Settings(modelops=ModelOpsSettings(drift_excluded_features=("feat_11",)))
    reference = build_reference(settings.modelops, _training_set(X, y), raw, _Probabilities())
    columns = {c["name"]: c for c in reference["columns"]}
    assert "feat_11" not in columns and len(columns) == len(FEATURES)  # 11 features + score
    assert columns["score"]["kind"] == "score" and columns["score"]["rank"] is None
    assert columns["feat_0"]["rank"] == 1  # the label leans on feat_0 most
    assert columns["feat_0"]["missing_share"] == pytest.approx(0.1, abs=0.02)
    assert reference["rows"] == 3000
    for column in columns.values():
        assert sum(column["shares"]) == pytest.approx(1.0)
        assert len(column["shares"]) == len(column["edges"]) + 1
    shares = gain_shares(raw, FEATURES)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert min(shares.values()) >= 0.0


def test_the_card_lists_the_top_features_the_drift_alert_watches() -> None:
    from shopsentry.models.card import top_features

    columns = [
        {"name": f"f{i}", "kind": "feature", "rank": i, "importance": 1 / (i + 1)}
        for i in range(1, 13)
    ] + [{"name": "never_split", "kind": "feature", "rank": None, "importance": 0.0}]
    lines = top_features({"drift_reference": {"columns": columns}})
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert "## Top 10 features" in lines
    assert [r.split(" | ")[1] for r in rows] == [f"f{i}" for i in range(1, 11)]
    assert top_features({}) == []
