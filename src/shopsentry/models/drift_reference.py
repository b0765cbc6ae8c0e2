"""The training reference that live drift is measured against, saved with each model.

At training, every feature's distribution on the latest training rows is summarised as
quantile bins (inner edges and the share of non-missing rows in each bin) plus the share
of missing values, and the model's own score on those rows likewise. The summary goes
into the version's ``report.json`` under ``drift_reference`` (in the version directory
and logged to MLflow with the run), so it travels with the model; the warehouse loader
copies it into ``raw.model_reference`` before each dbt build, where
``monitoring.feature_drift_daily`` compares each day's purchases against it (PSI).

A value ``v`` falls in bin ``i`` when ``edges[i - 1] <= v < edges[i]`` (the first bin is
open below, the last open above): numpy's ``searchsorted(edges, v, side="right")``, and
``lower_edge <= v and v < upper_edge`` in SQL. Each feature also carries its rank by the
model's total gain (1 = most important), which the alert rule uses to watch only the
top features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from shopsentry.config import ModelOpsSettings
    from shopsentry.models.dataset import TrainingSet

SCORE = "score"
Kind = Literal["feature", "score"]


class Scores(Protocol):
    """What the reference needs of a model: its probabilities for a feature matrix."""

    def predict(self, X: NDArray[np.float32]) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class BinnedReference:
    """One column's training distribution."""

    name: str
    kind: Kind
    edges: list[float]  # inner edges, ascending; len(shares) == len(edges) + 1
    shares: list[float]  # share of the non-missing rows in each bin
    missing_share: float
    rows: int
    importance: float = 0.0  # share of the model's total gain
    rank: int | None = None  # 1 = most important; None: the model never splits on it


def bin_values(
    values: NDArray[np.floating[Any]], bins: int
) -> tuple[list[float], list[float], float]:
    """(inner quantile edges, share per bin, missing share) of ``values``.

    Quantile edges give every bin about the same share on the training rows; a value
    that fills several quantiles (a flag that is mostly 0) collapses them into one edge,
    so discrete features get as many bins as they have values.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(values)
    present = values[~missing]
    missing_share = float(missing.mean()) if values.size else 0.0
    if present.size == 0:
        return [], [1.0], missing_share
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    edges = edges[edges > present.min()]  # an edge at the minimum leaves its bin empty
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    shares = counts / present.size
    return [float(e) for e in edges], [float(s) for s in shares], missing_share


def gain_shares(raw: bytes, feature_names: tuple[str, ...]) -> dict[str, float]:
    """Each feature's share of the model's total gain (0 for a feature never split on)."""
    import xgboost as xgb

    gain = xgb.Booster(model_file=bytearray(raw)).get_score(importance_type="total_gain")
    values = {
        name: float(sum(v) if isinstance(v, list) else v)
        for name in feature_names
        if (v := gain.get(name)) is not None
    }
    whole = sum(values.values())
    return {name: (values.get(name, 0.0) / whole if whole else 0.0) for name in feature_names}


def reference_rows(modelops: ModelOpsSettings, data: TrainingSet) -> TrainingSet:
    """The rows the reference describes: the latest ``modelops.reference_days`` of the
    data the model was trained and validated on.

    Not the whole history: a history's first weeks are unlike any later traffic (the
    30-day entity and velocity windows are still filling up), and drift should compare
    live traffic with the traffic the model was last judged on.
    """
    from shopsentry.models.dataset import to_datetime64

    if not len(data):
        return data
    since = to_datetime64(data.end - timedelta(days=modelops.reference_days))
    return data.subset(data.occurred_at > since)


def build_reference(
    modelops: ModelOpsSettings, data: TrainingSet, raw: bytes, model: Scores
) -> dict[str, Any]:
    """The reference of one trained model on its latest training rows, JSON-ready."""
    train = reference_rows(modelops, data)
    bins = modelops.drift_bins
    excluded = set(modelops.drift_excluded_features)
    importance = gain_shares(raw, train.feature_names)
    ranked = sorted((n for n, g in importance.items() if g > 0), key=lambda n: -importance[n])
    rank = {name: i + 1 for i, name in enumerate(ranked)}
    columns: list[BinnedReference] = []
    for i, name in enumerate(train.feature_names):
        if name in excluded:
            continue
        edges, shares, missing = bin_values(train.X[:, i], bins)
        columns.append(
            BinnedReference(
                name,
                "feature",
                edges,
                shares,
                missing,
                len(train),
                importance[name],
                rank.get(name),
            )
        )
    edges, shares, missing = bin_values(model.predict(train.X), bins)
    columns.append(BinnedReference(SCORE, "score", edges, shares, missing, len(train)))
    return {
        "bins": bins,
        "rows": len(train),
        "start": str(train.occurred_at.min().astype("datetime64[s]")) if len(train) else None,
        "end": str(train.occurred_at.max().astype("datetime64[s]")) if len(train) else None,
        "columns": [asdict(c) for c in columns],
    }


def psi(expected: NDArray[np.float64], actual: NDArray[np.float64], floor: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same bins.

    ``sum((a - e) * ln(a / e))`` with both shares floored at ``floor`` so an empty bin
    on one side stays finite (the same floor as the dbt model's).
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))
