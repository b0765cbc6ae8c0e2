"""The demo's latency summary reads Prometheus histograms the way Prometheus does."""

from __future__ import annotations

import math

import pytest

from shopsentry.cli.demo_summary import histogram_quantile


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
