"""The demo's summary: latency read from Prometheus histograms the way Prometheus does,
fraud caught from the log's decisions and the simulator's labels."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from tests.unit.warehouse.conftest import memlog  # noqa: F401

from shopsentry.cli.demo_summary import fraud_caught, histogram_quantile


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 50 under 10 ms, 40 more under 50 ms, 10 more under 100 ms.
    buckets = {0.01: 50.0, 0.05: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    # rank 95 lies halfway through the (0.05, 0.1] bucket.
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.075)


def test_quantile_in_the_open_bucket_is_its_lower_bound() -> None:
    assert histogram_quantile(0.99, {0.5: 10.0, math.inf: 20.0}) == pytest.approx(0.5)


def test_no_observations_gives_none() -> None:
    assert histogram_quantile(0.95, {}) is None
    assert histogram_quantile(0.95, {0.1: 0.0, math.inf: 0.0}) is None


def test_fraud_caught_joins_the_logs_decisions_with_the_simulators_labels(
    memlog,  # noqa: F811
    settings,
) -> None:
    """From the log, no warehouse: only live decisions, only the simulator's truth."""
    since = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for event_id, is_fraud, source in [
        ("e1", True, "chargeback"),
        ("e2", True, "simulator"),
        ("e3", True, "review"),  # an analyst's verdict, not ground truth
        ("e4", False, "chargeback"),
        ("e5", True, "chargeback"),
    ]:
        label = {"event_id": event_id, "is_fraud": is_fraud, "label_source": source}
        memlog.append(settings.topics.labels.name, orjson.dumps(label), b"u1")
    for event_id, band, hour in [
        ("e1", "review", 13),
        ("e2", "approve", 13),
        ("e3", "decline", 13),
        ("e4", "decline", 13),
        ("e5", "decline", 11),  # decided before the live traffic began
        ("e1", "review", 13),  # a re-produced decision: counted once
    ]:
        decided_at = since.replace(hour=hour).isoformat()
        decision = {"event_id": event_id, "band": band, "decided_at": decided_at}
        memlog.append(settings.topics.decisions.name, orjson.dumps(decision), b"u1")

    assert fraud_caught(settings, since) == {"fraud caught (simulator truth)": "1 of 2 (50%)"}


def test_fraud_caught_with_nothing_decided_says_so(memlog, settings) -> None:  # noqa: F811
    assert fraud_caught(settings, datetime.now(UTC)) == {"fraud caught (simulator truth)": "0 of 0"}
