"""The fraud model: training, evaluation, MLflow registry, and the fast scorer.

The detector needs only the scorer side, re-exported here and free of MLflow and
scikit-learn imports::

    from shopsentry.models import ModelFiles, load_champion, champion_version

Training (``shopsentry.models.training.train_and_register``) and the registry
(``shopsentry.models.registry``) import their heavy dependencies on use.
"""

from __future__ import annotations

from shopsentry.models.scorer import (
    ModelFiles,
    Scorer,
    build_scorer,
    challenger_version,
    champion_version,
    load_challenger,
    load_champion,
)

__all__ = [
    "ModelFiles",
    "Scorer",
    "build_scorer",
    "challenger_version",
    "champion_version",
    "load_challenger",
    "load_champion",
]
