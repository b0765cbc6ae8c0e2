"""The detector worker's metrics: /metrics binds the host it is given, a busy port is a
config error, batch histograms follow Prometheus' `le` semantics, the shared names."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest
from prometheus_client import generate_latest

from shopsentry.detection.metrics import BatchHistogram, WorkerMetrics
from shopsentry.errors import ConfigError


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            return b"shopsentry_consumer_lag" in r.read()
    except OSError:
        return False


def test_serve_binds_the_given_host_only() -> None:
    port = _free_port("127.0.0.2")
    WorkerMetrics().serve(port, "127.0.0.2")
    assert _answers("127.0.0.2", port)
    assert not _answers("127.0.0.1", port)  # not loopback's usual address: the given one


def test_serve_on_a_taken_port_is_a_config_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            WorkerMetrics().serve(port)


def test_batch_histogram_matches_prometheus_le_semantics() -> None:
    h = BatchHistogram((0.01, 0.1, 1.0))
    h.observe_many(np.array([0.005, 0.01, 0.05, 0.5, 2.0]))
    buckets, total = h.snapshot()
    assert buckets == [("0.01", 2.0), ("0.1", 3.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert total == pytest.approx(2.565)
    assert h.count == 5 and h.quantile(0.5) == 0.1


def test_worker_metrics_expose_the_shared_names() -> None:
    m = WorkerMetrics()
    m.decisions.labels("approve").inc(3)
    m.e2e.observe_many([0.002, 0.004])
    m.stage["features"].observe(0.001)
    m.set_model_version("5")
    m.set_lag({("purchase-events", 1): 7})
    text = generate_latest(m.registry).decode()
    for needle in (
        'shopsentry_decisions_total{band="approve"} 3.0',
        'shopsentry_end_to_end_latency_seconds_count{since="log_timestamp"} 2.0',
        'shopsentry_stage_latency_seconds_bucket{le="0.0025",stage="features"} 1.0',
        'shopsentry_model_version_info{version="5"} 1.0',
        'shopsentry_consumer_lag{partition="1",topic="purchase-events"} 7.0',
        "shopsentry_in_flight_events 0.0",
        "shopsentry_prediction_latency_seconds_count 0.0",
    ):
        assert needle in text, needle


def test_a_busy_metrics_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            WorkerMetrics().serve(port)
    assert str(port) in info.value.one_line()
