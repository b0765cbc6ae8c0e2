"""Small synthetic models and matrices for the model tests (no simulator, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FEATURES = tuple(f"feat_{i}" for i in range(12))


def synthetic(n: int, seed: int = 0, nan_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Rows where fraud depends on a few features non-linearly, with missing values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    logit = 2.0 * X[:, 0] + 1.5 * X[:, 1] * X[:, 2] - 1.0 * np.abs(X[:, 3]) - 3.5
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    X[rng.random(X.shape) < nan_share] = np.nan
    return X, y


def train_raw(
    X: np.ndarray, y: np.ndarray, rounds: int = 60, depth: int = 6, names=FEATURES
) -> bytes:
    import xgboost as xgb

    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "max_depth": depth,
            "tree_method": "hist",
            "nthread": 1,
            "seed": 1,
        },
        xgb.DMatrix(X, label=y, feature_names=list(names), missing=np.nan),
        rounds,
    )
    return bytes(booster.save_raw("json"))


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic(4000)


@pytest.fixture(scope="session")
def model_raw(data) -> bytes:
    return train_raw(*data)


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kernel")
