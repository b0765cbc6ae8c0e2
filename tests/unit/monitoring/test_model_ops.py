"""Model quality and drift gauges, read from the warehouse when it changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shopsentry.config import Settings
from shopsentry.monitoring import model_ops
from shopsentry.monitoring.model_ops import ModelOpsCollector, Snapshot

SNAPSHOT = Snapshot(
    quality=[
        {"model_role": "champion", "model_version": "3", "precision_at_threshold": 0.5,
         "recall_at_threshold": 0.25, "pr_auc": 0.4, "alert_rate": 0.01, "label_maturity": 0.3},
        {"model_role": "challenger", "model_version": "4", "precision_at_threshold": None,
         "recall_at_threshold": 0.1, "pr_auc": 0.2, "alert_rate": 0.0, "label_maturity": 0.3},
    ],
    features=[
        {"feature": "amount", "model_version": "3", "psi": 1.5, "missing_share": 0.0,
         "importance_rank": 1},
        {"feature": "new_ip", "model_version": "3", "psi": 0.01, "missing_share": 0.2,
         "importance_rank": None},
    ],
    scores=[{"model_version": "3", "model_role": "champion", "psi": 0.4}],
)  # fmt: skip


def _scrape(collector: ModelOpsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_the_latest_rows_become_labelled_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.warehouse_path.write_bytes(b"x")
    monkeypatch.setattr(model_ops, "read_snapshot", lambda s: SNAPSHOT)
    text = _scrape(ModelOpsCollector(settings.warehouse_path))
    assert 'shopsentry_model_precision{model_version="3",role="champion"} 0.5' in text
    assert 'shopsentry_model_precision{model_version="4"' not in text  # no value, no sample
    assert 'shopsentry_model_recall{model_version="4",role="challenger"} 0.1' in text
    assert 'shopsentry_feature_psi{feature="amount",model_version="3"} 1.5' in text
    assert 'shopsentry_feature_importance_rank{feature="amount",model_version="3"} 1.0' in text
    assert 'shopsentry_feature_importance_rank{feature="new_ip"' not in text
    assert 'shopsentry_score_psi{model_version="3",role="champion"} 0.4' in text


def test_the_warehouse_is_read_again_only_after_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    reads: list[int] = []

    def read(warehouse: Path) -> Snapshot:
        reads.append(1)
        return SNAPSHOT

    monkeypatch.setattr(model_ops, "read_snapshot", read)
    collector = ModelOpsCollector(settings.warehouse_path)
    assert "shopsentry_feature_psi{" not in _scrape(collector)  # no warehouse: no series
    assert reads == []
    settings.warehouse_path.write_bytes(b"x")
    _scrape(collector)
    _scrape(collector)
    assert len(reads) == 1
    settings.warehouse_path.write_bytes(b"xy")
    _scrape(collector)
    assert len(reads) == 2
