"""Prometheus scraping the running system, its alert rules firing, every Grafana panel fed.

The services run as an operator runs them (``shopsentry serve``, ``detect --workers 2``,
``notify``, ``simulate``) on the embedded log; Debian's ``prometheus`` scrapes them with
the stack's own scrape config and alert expressions (only targets, intervals and ``for:``
durations changed, see ``prometheus_server``). The test then does what an outage does:

1. traffic flows, the workers score it; the design's metrics are queried through the
   Prometheus HTTP API;
2. the workers stop while the simulator goes on: the lag passes 1,000 and
   ``ConsumerLagHigh`` goes pending, then firing;
3. the workers restart: they drain the backlog and the alert resolves;
4. every panel query of the Grafana dashboard returns data;
5. the simulator stops; once the workers are caught up, Prometheus' totals and
   latency quantiles equal what the workers report themselves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.integration.detection.conftest import Champion, promote
from tests.integration.ops.airflow_server import free_port, wait_for
from tests.integration.ops.prometheus_server import Prometheus, running_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "shopsentry.json"
RATE = "250/s"  # simulator traffic: 1,000 behind within seconds once the workers stop
LAG_ALERT = "ConsumerLagHigh"


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    ports: dict[str, int]
    logs: Path
    services: dict[str, Service]

    def start(self, name: str, *args: str) -> Service:
        log = self.logs / f"{name}-{len(list(self.logs.glob(name + '*')))}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "shopsentry", *args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        self.services[name] = Service(name, process, log)
        return self.services[name]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "shopsentry", *args],
            env=self.env, capture_output=True, text=True, timeout=600, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start_detect(self) -> Service:
        return self.start(
            "detect", "detect", "--workers", "2", "--metrics-port", str(self.ports["detect"])
        )

    @property
    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports['detect'] + i}/metrics" for i in range(2)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, champion: Champion) -> Iterator[Stack]:
    from shopsentry.bus import BusConfig, open_log, topic_specs
    from shopsentry.config import Settings

    root = tmp_path_factory.mktemp("prometheus-live")
    data_dir = root / "data"
    settings = Settings(data_dir=data_dir)
    promote(settings, champion, "1")
    log = open_log(BusConfig.from_settings(settings))
    log.create_topics(topic_specs(settings.topics))
    log.close()
    ports = {"serve": free_port(), "notify": free_port(), "detect": _two_free_ports()}
    logs = root / "logs"
    logs.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOPSENTRY_")},
        "SHOPSENTRY_DATA_DIR": str(data_dir),
        "SHOPSENTRY_BUS": "local",
        "COLUMNS": "200",  # the detect summary table on one line per worker
    }
    stack = Stack(data_dir, env, ports, logs, {})
    _record_dag_runs(stack, success=1, failed=1)  # both series exist from the first scrape
    try:
        stack.start("serve", "serve", "--port", str(ports["serve"]))
        stack.start("notify", "notify", "--demo", "--metrics-port", str(ports["notify"]))
        stack.start_detect()
        yield stack
    finally:
        for service in reversed(list(stack.services.values())):
            service.stop()


def _two_free_ports() -> int:
    """A base port whose next port is free too (detector worker i serves on base + i)."""
    import socket

    def wait() -> int | None:
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                return None
        return base

    return wait_for(wait, "two adjacent free ports", 30)


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    yield from running_prometheus(tmp_path_factory.mktemp("prometheus"), stack.ports)


def _record_dag_runs(stack: Stack, success: int, failed: int) -> None:
    """What the DAGs' callbacks do after each run (tests/integration/ops/test_airflow_*
    shows the callbacks doing it under the scheduler)."""
    from shopsentry.config import Settings
    from shopsentry.monitoring.metrics import dag_runs_path, record_dag_run

    settings = Settings(data_dir=stack.data_dir)
    for _ in range(success):
        record_dag_run(dag_runs_path(settings.state_dir), "hourly_etl", "success")
    for _ in range(failed):
        record_dag_run(dag_runs_path(settings.state_dir), "hourly_etl", "failed")


def _dag_run_counts(stack: Stack) -> dict[str, int]:
    from shopsentry.config import Settings
    from shopsentry.monitoring.metrics import dag_run_counts, dag_runs_path

    counts = dag_run_counts(dag_runs_path(Settings(data_dir=stack.data_dir).state_dir))
    states = ("success", "failed")
    return {state: sum(n for (_, s), n in counts.items() if s == state) for state in states}


def _analyst_key(stack: Stack) -> str:
    """A real (non-demo) key, created the way deploy/README.md tells an operator to."""
    out = stack.cli("apikeys", "create", "--role", "analyst", "--name", "prometheus-test")
    return out.strip().splitlines()[-1]


def _send_one_malformed_purchase(stack: Stack) -> None:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.config import Settings

    settings = Settings(data_dir=stack.data_dir)
    log = open_log(BusConfig.from_settings(settings))
    try:
        producer = log.producer()
        producer.send(settings.topics.purchase_events.name, b"{not json", b"u-broken")
        producer.flush()
        producer.close()
    finally:
        log.close()


def test_the_live_stack_alerts_on_lag_and_feeds_every_panel(
    stack: Stack, prometheus: Prometheus
) -> None:
    prometheus.wait(
        lambda: len(up := prometheus.targets_up()) == 5 and all(up.values()),
        "every target (API, 2 workers, notifier, Prometheus) to be up",
    )
    simulator = stack.start("simulate", "simulate", "--rate", RATE, "--seed", "11")
    _send_one_malformed_purchase(stack)
    etl = stack.start("etl", "batch", "run", "hourly_etl")  # the warehouse the API queries
    prometheus.wait(
        lambda: (prometheus.value("sum(shopsentry_events_processed_total)") or 0) > 500,
        "the workers' processed events to reach Prometheus",
    )
    _record_dag_runs(stack, success=3, failed=1)

    # 2. Every worker stops; the simulator does not.
    stack.services["detect"].stop()
    prometheus.wait(lambda: "pending" in prometheus.alert_states(LAG_ALERT), f"{LAG_ALERT} pending")
    assert (prometheus.value("max(shopsentry_api_observed_detector_lag)") or 0) > 1000
    prometheus.wait(lambda: "firing" in prometheus.alert_states(LAG_ALERT), f"{LAG_ALERT} firing")

    # 3. They come back, drain the backlog, and the alert resolves.
    stack.start_detect()
    prometheus.wait(lambda: not prometheus.alert_states(LAG_ALERT), f"{LAG_ALERT} to resolve")
    assert (prometheus.value("max(sum by (topic) (shopsentry_consumer_lag))") or 0) <= 1000

    # The DAG side, once the ETL run (`batch run` counts its run too) is done: the success
    # rate over the runs counted since Prometheus' first scrape (1 success, 1 failure).
    assert etl.process.wait(timeout=600) == 0, etl.log.read_text()[-3000:]
    runs = _dag_run_counts(stack)
    expected = (runs["success"] - 1) / (runs["success"] + runs["failed"] - 2)
    success_rate = _panel_expr("DAG success rate (24 h)")
    prometheus.wait(
        lambda: prometheus.value(success_rate) == pytest.approx(expected),
        f"the DAG success rate to be {expected:.3f} as counted",
    )
    prometheus.wait(lambda: "firing" in prometheus.alert_states("DagRunFailed"), "DagRunFailed")
    prometheus.wait(
        lambda: "firing" in prometheus.alert_states("DagSuccessRateLow"), "DagSuccessRateLow"
    )

    # 4. Every Grafana panel has data (the warehouse query panel once the API queried it).
    key = _analyst_key(stack)
    answer = httpx.get(
        f"http://127.0.0.1:{stack.ports['serve']}/v1/analytics/daily-sales",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    for title, expr in _panel_queries():
        prometheus.wait(lambda e=expr: prometheus.query(e), f"data for panel {title!r}: {expr}")

    # 5. Traffic stops; the workers catch up; Prometheus agrees with the workers' own figures.
    simulator.stop()
    _compare_with_the_workers(stack, prometheus)


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def _panel_expr(title: str) -> str:
    return next(expr for t, expr in _panel_queries() if t == title)


def _compare_with_the_workers(stack: Stack, prometheus: Prometheus) -> None:
    from shopsentry.cli.demo_summary import histogram_quantile
    from shopsentry.monitoring.metrics_reader import scrape_all

    def workers_idle() -> list[Any] | None:
        scrapes, failed = scrape_all(stack.worker_urls)
        assert not failed, failed
        if any(s.total("consumer_lag") for s in scrapes):
            return None
        processed = sum(s.total("events_processed_total") for s in scrapes)
        scraped = prometheus.value("sum(shopsentry_events_processed_total)")
        return scrapes if scraped == processed else None

    scrapes = prometheus.wait(workers_idle, "the workers to catch up and Prometheus to see it")
    for family in ("prediction_latency_seconds", "end_to_end_latency_seconds"):
        own: dict[float, float] = {}
        for s in scrapes:
            for le, n in s.by_label(f"{family}_bucket", "le").items():
                own[float(le)] = own.get(float(le), 0.0) + n
        expr = f"histogram_quantile(0.95, sum by (le) (shopsentry_{family}_bucket))"
        assert prometheus.value(expr) == pytest.approx(histogram_quantile(0.95, own)), family
    per_minute_expr = _panel_expr("Events processed per minute").replace("by (topic) ", "")
    per_minute = prometheus.value(per_minute_expr)
    assert per_minute is not None and per_minute > 0

    # The detect command's own summary table, printed when it stops, row per worker.
    output = stack.services["detect"].stop()
    summary = {
        int(m["worker"]): int(m["records"])
        for m in re.finditer(r"^\W*(?P<worker>\d+)\W+\d+\W+0\W+(?P<records>\d+)\W", output, re.M)
    }
    assert len(summary) == 2, output[-3000:]
    for s in scrapes:
        index = stack.worker_urls.index(s.url)
        assert s.total("events_processed_total") == summary[index], (s.url, summary)
