"""`capacity --measure` against real HTTP endpoints serving Prometheus text.

Each fake worker is a real prometheus_client registry behind a real HTTP server; its
collector advances by fixed steps on every scrape, so the deltas (and the arithmetic the
measurement does on them) are known exactly whatever the wall-clock timing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from typer.testing import CliRunner

from shopsentry.cli import app
from shopsentry.errors import ShopsentryError
from shopsentry.monitoring.measure import NothingToMeasure, analyse, measure
from shopsentry.monitoring.metrics_reader import Scrape, ScrapeFailed, parse_metrics, scrape


@dataclass(eq=False)
class StepCollector:
    """Scrape k exposes: events = base + per_scrape·k; parse 1 ms and score 4 ms per event;
    commit timed per batch (one batch per scrape, 0.2 ms per event in it);
    in_flight = gauge(k); end-to-end 50 ms per event."""

    base: int
    per_scrape: int
    in_flight: tuple[float, ...]
    k: int = 0

    def describe(self) -> list[object]:
        return []

    def collect(self) -> Iterator[object]:
        k = self.k
        self.k += 1
        n = self.base + self.per_scrape * k
        events = CounterMetricFamily("shopsentry_events_processed", "events", labels=["topic"])
        events.add_metric(["purchase-events"], n)
        yield events
        stages = HistogramMetricFamily(
            "shopsentry_stage_latency_seconds", "stage time", labels=["stage"]
        )
        stages.add_metric(["parse"], [("+Inf", n)], sum_value=0.001 * n)
        stages.add_metric(["score"], [("+Inf", n)], sum_value=0.004 * n)
        # One commit per scrape interval, lasting 0.2 ms per event in the batch.
        stages.add_metric(["commit"], [("+Inf", 10 + k)], sum_value=0.0002 * n)
        yield stages
        e2e = HistogramMetricFamily("shopsentry_end_to_end_latency_seconds", "e2e")
        e2e.add_metric([], [("0.5", n), ("+Inf", n)], sum_value=0.05 * n)
        yield e2e
        gauge = GaugeMetricFamily("shopsentry_in_flight_events", "in flight")
        gauge.add_metric([], self.in_flight[min(k, len(self.in_flight) - 1)])
        yield gauge
        lag = GaugeMetricFamily("shopsentry_consumer_lag", "lag", labels=["topic", "partition"])
        lag.add_metric(["purchase-events", "0"], 7)
        yield lag


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _serve(collector: StepCollector) -> Iterator[str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    # prometheus_client's own WSGI exposition app, served with a short shutdown poll.
    server = make_server("127.0.0.1", 0, make_wsgi_app(registry), handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def worker0() -> Iterator[str]:
    yield from _serve(StepCollector(base=1000, per_scrape=60, in_flight=(1, 2, 3)))


@pytest.fixture
def worker1() -> Iterator[str]:
    yield from _serve(StepCollector(base=500, per_scrape=40, in_flight=(2, 2, 2)))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"


def test_parse_and_scrape_read_what_the_server_exposes(worker0: str) -> None:
    scraped = scrape(worker0)
    assert scraped.total("events_processed_total") == 1000
    assert scraped.total("stage_latency_seconds_count", stage="score") == 1000
    assert scraped.by_label("stage_latency_seconds_sum", "stage")["parse"] == pytest.approx(1.0)
    assert parse_metrics("# TYPE x gauge\nx 3\n") == {("x", ()): 3.0}


def test_measure_arithmetic(worker0: str, worker1: str) -> None:
    m = measure([worker0, worker1], interval_s=0.2, samples=3, target_per_s=50_000 / 3600)
    # Over 2 scrapes: 120 + 80 events.
    assert m.events == 200
    assert m.arrival_per_s * m.interval_s == pytest.approx(200)
    assert m.arrival_by_topic_per_s["purchase-events"] == pytest.approx(m.arrival_per_s)
    assert m.workers == 2
    assert m.stage_mean_ms["parse"] == pytest.approx(1.0)
    assert m.stage_mean_ms["score"] == pytest.approx(4.0)
    # commit: Δsum = 0.0002·200 = 0.04 s over Δcount = 2 + 2 batches → 10 ms per batch.
    assert m.stage_mean_ms["commit"] == pytest.approx(10.0)
    # Busy time per event: 1 + 4 + 0.2 ms.
    assert m.busy_s_per_event == pytest.approx(0.0052)
    # commit is timed once per batch: 4 batches for 200 events.
    assert m.events_per_batch == pytest.approx(50.0)
    assert m.per_worker_per_s == pytest.approx(1 / 0.0052)
    assert m.capacity_per_s == pytest.approx(2 / 0.0052)
    assert m.end_to_end_mean_s == pytest.approx(0.05)
    # In flight summed over the workers per scrape: 3, 4, 5 → mean 4.
    assert m.l_measured == pytest.approx(4.0)
    assert m.l_from_busy == pytest.approx(m.arrival_per_s * 0.0052)
    assert m.l_from_end_to_end == pytest.approx(m.arrival_per_s * 0.05)
    assert m.consumer_lag == 14
    assert m.headroom == pytest.approx((2 / 0.0052) / (50_000 / 3600))
    assert m.workers_for_target == 2
    assert m.scaling is not None and m.scaling.workers_needed == 2
    assert m.utilisation == pytest.approx(m.arrival_per_s / m.capacity_per_s)
    assert not m.unreachable


def test_unreachable_endpoint_is_reported_and_the_rest_measured(worker0: str) -> None:
    dead = _closed_port_url()
    m = measure([worker0, dead], interval_s=0.05, samples=2)
    assert dead in m.unreachable
    assert m.targets == (worker0,)
    assert m.events == 60


def test_nothing_reachable_is_a_clear_error() -> None:
    with pytest.raises(NothingToMeasure, match="no metrics endpoint answered"):
        measure([_closed_port_url()], interval_s=0.05, samples=2)


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not metrics</html>" if self.path == "/html" else b"missing"
        self.send_response(200 if self.path == "/html" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_non_metrics_responses_are_scrape_failures() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(ScrapeFailed, match="HTTP 404"):
            scrape(base + "/metrics")
        with pytest.raises(ScrapeFailed, match="not Prometheus"):
            scrape(base + "/html")
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(ScrapeFailed("u", "r"), ShopsentryError)


def test_cli_measure_json(worker0: str, worker1: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "capacity",
            "--measure",
            worker0,
            worker1,
            "--interval",
            "0.2s",
            "--samples",
            "3",
            "--target",
            "50000/h",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    measured = data["measured"]
    assert measured["events"] == 200
    assert measured["busy_s_per_event"] == pytest.approx(0.0052)
    assert measured["l_measured"] == pytest.approx(4.0)
    assert data["scaling"]["workers_needed"] == 2
    assert data["plan"]["queue_needed"] == 996


def test_cli_measure_tables(worker0: str) -> None:
    result = CliRunner().invoke(
        app,
        ["capacity", "--measure", worker0, "--interval", "0.1s", "--samples", "2"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Measured over" in result.output
    assert "L measured (in_flight_events)" in result.output
    assert "5.20 ms" in result.output  # busy time per event


def _scrape(at: float, events: float, batches: float, busy_s: float) -> Scrape:
    stage = (("stage", "commit"),)
    return Scrape(
        url="w0",
        at=at,
        samples={
            ("shopsentry_events_processed_total", (("topic", "t"),)): events,
            ("shopsentry_stage_latency_seconds_count", stage): batches,
            ("shopsentry_stage_latency_seconds_sum", stage): busy_s,
        },
    )


def test_tiny_batches_at_light_load_are_flagged_as_a_lower_bound() -> None:
    # 10 events in 10 s, one batch each, 4 ms per batch: 1 % utilised.
    m = analyse([[_scrape(0.0, 0, 0, 0.0)], [_scrape(10.0, 10, 10, 0.04)]])
    assert m.events_per_batch == pytest.approx(1.0)
    assert m.per_worker_per_s == pytest.approx(250.0)
    assert any("lower bound" in w for w in m.warnings)


def test_counter_reset_is_reported_not_used() -> None:
    m = analyse([[_scrape(0.0, 100, 10, 1.0)], [_scrape(10.0, 5, 1, 0.1)]])
    assert m.events == 0
    assert any("went backwards" in w for w in m.warnings)
