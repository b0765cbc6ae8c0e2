"""Live model quality and drift as Prometheus gauges, read from the warehouse.

The figures are computed by dbt (``monitoring.*``, docs/model-ops.md), so no process
holds them in memory. The API, the long-lived process that already serves the batch
side's metrics, registers :class:`ModelOpsCollector`: at scrape time it reads the
latest day's rows read-only, and keeps them until the warehouse file changes (a scrape
every 15 s costs one ``stat`` while nothing was rebuilt). A warehouse that is missing,
busy or not built yet exports no model-ops series rather than failing the scrape.

Exported, for the latest purchase day in the tables:

* ``shopsentry_model_precision``, ``_recall``, ``_pr_auc``, ``_alert_rate``,
  ``_label_maturity`` ``{model_version, role}`` (role: champion or challenger);
* ``shopsentry_feature_psi``, ``shopsentry_feature_missing_share``,
  ``shopsentry_feature_importance_rank`` ``{feature, model_version}`` against the
  champion's training reference;
* ``shopsentry_score_psi{model_version, role}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shopsentry.errors import ShopsentryError

logger = logging.getLogger(__name__)

QUALITY_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("shopsentry_model_precision", "precision_at_threshold",
     "Precision at the alert threshold on the latest day, from labels known so far."),
    ("shopsentry_model_recall", "recall_at_threshold",
     "Recall at the alert threshold on the latest day, from labels known so far."),
    ("shopsentry_model_pr_auc", "pr_auc",
     "PR-AUC (average precision) on the latest day, from labels known so far."),
    ("shopsentry_model_alert_rate", "alert_rate",
     "Share of the latest day's purchases at or over the alert threshold."),
    ("shopsentry_model_label_maturity", "label_maturity",
     "Share of the latest day's fraud expected to be labelled by now."),
)  # fmt: skip
FEATURE_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("shopsentry_feature_psi", "psi",
     "Population stability index of the feature on the latest day vs the training reference."),
    ("shopsentry_feature_missing_share", "missing_share",
     "Share of the latest day's purchases with the feature missing."),
    ("shopsentry_feature_importance_rank", "importance_rank",
     "The feature's rank by the model's total gain (1 = most important)."),
)  # fmt: skip


@dataclass
class Snapshot:
    quality: list[dict[str, Any]] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)


def read_snapshot(warehouse: Path) -> Snapshot:
    """The latest day's rows of the three tables in the warehouse file ``warehouse``; a
    table that is not built is empty."""
    import importlib

    queries = importlib.import_module("shopsentry.warehouse.queries")
    snapshot = Snapshot()
    readers = (
        ("quality", "latest_quality"),
        ("features", "feature_drift"),
        ("scores", "latest_score_drift"),
    )
    for name, query in readers:
        try:
            setattr(snapshot, name, getattr(queries, query)(warehouse))
        except ShopsentryError as exc:
            logger.debug("model-ops metrics: %s not readable: %s", name, exc.one_line())
        except Exception as exc:  # a scrape never fails on the warehouse's account
            logger.warning("model-ops metrics: reading %s failed: %r", name, exc)
    return snapshot


class ModelOpsCollector(Collector):
    """Model quality and drift gauges from the warehouse, re-read when it changes."""

    def __init__(self, warehouse: Path) -> None:
        self.warehouse = warehouse
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._snapshot = Snapshot()

    def _current(self) -> Snapshot:
        path = self.warehouse
        try:
            stat = path.stat()
        except OSError:
            return Snapshot()
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._snapshot = read_snapshot(self.warehouse)
                self._stamp = stamp
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()
        for name, column, text in QUALITY_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["model_version", "role"])
            for row in snapshot.quality:
                if row.get(column) is not None:
                    gauge.add_metric([str(row["model_version"]), row["model_role"]], row[column])
            yield gauge
        for name, column, text in FEATURE_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["feature", "model_version"])
            for row in snapshot.features:
                if row.get(column) is not None:
                    gauge.add_metric([row["feature"], str(row["model_version"])], row[column])
            yield gauge
        score = GaugeMetricFamily(
            "shopsentry_score_psi",
            "Population stability index of the model's scores on the latest day"
            " vs its scores on its training rows.",
            labels=["model_version", "role"],
        )
        for row in snapshot.scores:
            if row.get("psi") is not None:
                score.add_metric([str(row["model_version"]), row["model_role"]], row["psi"])
        yield score
