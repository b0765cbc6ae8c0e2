"""The dashboard in a real browser: headless Chromium opens the page served by uvicorn,
watches alerts arrive while events flow into the log, reviews one, and the review is
both shown and published to ``alert-reviews``. A screenshot is kept as a test artifact.

The first test writes events the way the detector emits them (purchases, behaviour,
decisions, alerts written into the embedded log by another log client), so it needs no
model; the second runs the real pipeline: a champion trained on a small simulated
history, `shopsentry detect` and `shopsentry simulate --speed` as child processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shopsentry.config import Settings
from shopsentry.events.codec import encode
from shopsentry.events.schema import PageView
from tests.unit.api.factories import make_keys, publish, purchase_json, read_topic, scored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Probabilities cycling through approve / review / decline so every chart has data.
PROBABILITIES = (0.05, 0.12, 0.3, 0.08, 0.82, 0.2, 0.97, 0.15, 0.74, 0.03)


class Traffic:
    """Publishes scored purchases (and page views) into the log until stopped."""

    def __init__(self, settings: Settings, every_s: float = 0.15) -> None:
        from shopsentry.bus import BusConfig, open_log

        self.settings = settings
        self.log = open_log(BusConfig.from_settings(settings))
        self.every_s = every_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        producer = self.log.producer()
        i = 0
        while not self._stop.is_set():
            now = datetime.now(UTC)
            # scored() offsets event i by i seconds: start it i seconds back so it is "now".
            item = scored(
                i,
                user_id=f"user-{i % 7}",
                probability=PROBABILITIES[i % len(PROBABILITIES)],
                at=now - timedelta(seconds=i),
            )
            publish(self.log, self.settings, [item])
            view = PageView(
                event_id=f"pv-{i:05d}",
                source="web",
                user_id=item.purchase.user_id,
                occurred_at=now,
                page="/checkout",
            )
            producer.send(
                self.settings.topics.user_behavior.name, encode(view), key=view.user_id.encode()
            )
            producer.flush()
            self.sent += 1
            i += 1
            self._stop.wait(self.every_s)
        producer.close()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.log.close()


def wait_for_more_alerts(page: Any, *, timeout_ms: int) -> None:
    """Wait until the dashboard's alert count grows past what it shows now."""
    shown = int(page.locator("#kpi-alerts").inner_text().replace(",", ""))
    page.wait_for_function(
        "(n) => Number(document.querySelector('#kpi-alerts').textContent.replace(/,/g, '')) > n",
        arg=shown,
        timeout=timeout_ms,
    )


def _chart_points(page: Any, chart_id: str) -> int:
    """How many non-null values the chart's uPlot instance is drawing (all series)."""
    return int(
        page.evaluate(
            """(id) => {
                const u = window.shopsentryCharts[id];
                return u.data.slice(1).flat().filter((v) => v !== null && v !== undefined).length;
            }""",
            chart_id,
        )
    )


DATED_UTC = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$")


def assert_reads_like_an_analyst_would(page: Any) -> None:
    """Reasons in words with a direction, dated times, charts that fit their data."""
    reasons = page.locator("#alert-table tbody tr").first.locator("td.reasons").inner_text()
    assert re.search(r"▲ amount \$\d+\.\d\d, 12× this user's average", reasons), reasons
    assert "▲ account 3 minutes old" in reasons
    assert reasons.count("this user's average") == 1  # the amount and its ratio: one reason
    assert "0.00" not in reasons and "account_age_days" not in reasons
    for cell in page.locator("#alert-table tbody td.time").all_inner_texts():
        assert DATED_UTC.match(cell), cell
    history = page.locator("#alert-detail ul").last.locator("li").all_inner_texts()
    assert history and all(re.match(r"^\d{4}-\d{2}-\d{2} ", h) for h in history), history
    assert page.locator("#updated").inner_text().endswith(" UTC")
    charts = page.evaluate(
        """() => {
            const c = window.shopsentryCharts, out = {};
            for (const id in c) {
                const u = c[id];
                out[id] = {x: u.data[0], y: u.data[1], min: u.scales.x.min, max: u.scales.x.max,
                           labels: (u.axes[0]._values || []).map(String)};
            }
            return out;
        }"""
    )
    events = charts["chart-events"]
    # The x range is the data's own, not a fixed hour with the data in its right edge,
    # and the last point is a complete minute, not a half-counted one.
    assert (len(events["x"]) < 10 and events["min"] == events["x"][0]) or len(events["x"]) == 1
    assert events["y"][-1] > 0
    for chart in ("chart-events", "chart-lag", "chart-sales"):
        labels = [v for v in charts[chart]["labels"] if v]
        assert labels and all("\n" not in v for v in labels), (chart, labels)
        assert len(set(labels)) == len(labels), (chart, labels)
    sales = charts["chart-sales"]
    assert sales["min"] <= sales["x"][0] - 43200 and sales["max"] >= sales["x"][-1] + 43200


def test_dashboard_shows_live_alerts_and_records_a_review(
    tmp_path: Path, browser_page: Any, live_server: Any, artifact_dir: Path
) -> None:
    from shopsentry.api import create_app

    settings = Settings(data_dir=tmp_path / "data", log_fsync="never")
    keys = make_keys(settings)
    app = create_app(settings)
    page = browser_page

    with live_server(app) as server, Traffic(settings):
        page.goto(f"{server.url}/dashboard?interval=500")
        assert page.title() == "shopsentry · live"
        page.fill("#api-key", keys.analyst)
        page.click("#key-form button")
        page.wait_for_selector("#conn-status.ok", timeout=20_000)

        rows = "#alert-table tbody tr[data-status=open]"
        page.wait_for_selector(rows, timeout=30_000)
        # More alerts keep arriving while events flow.
        wait_for_more_alerts(page, timeout_ms=30_000)

        alert_id = page.locator(rows).first.get_attribute("data-alert-id")
        assert alert_id and alert_id.startswith("alert-ev-")
        # By its id: newer alerts keep arriving on top, so "the first row" moves.
        row = page.locator(f'#alert-table tbody tr[data-alert-id="{alert_id}"]')
        row.locator("button.review-fp").click()
        reviewed = f'#alert-table tbody tr[data-alert-id="{alert_id}"][data-status=reviewed]'
        page.wait_for_selector(reviewed, timeout=20_000)
        assert "false_positive" in page.locator(f"{reviewed} .status-cell").inner_text()
        # The next poll rebuilds the table from the server: still reviewed there.
        page.wait_for_function(
            "() => document.querySelector('#kpi-reviewed').textContent === '1'", timeout=20_000
        )
        page.wait_for_selector(reviewed, timeout=20_000)
        page.wait_for_function(
            "() => document.querySelector('#kpi-fp-rate').textContent === '100.0%'", timeout=20_000
        )
        # The queue keeps being redrawn from the server after a review.
        page.wait_for_function(
            "() => document.querySelector('#queue-count').textContent"
            " === '(' + document.querySelector('#kpi-open').textContent + ' open)'",
            timeout=20_000,
        )

        # Details of an alert open below the queue.
        page.locator(f'#alert-table tbody tr[data-alert-id="{alert_id}"] a').click()
        page.wait_for_selector("#alert-detail h2", timeout=10_000)
        detail = page.locator("#alert-detail").inner_text()
        assert "Why it was flagged" in detail
        assert "account 3 minutes old" in detail and "raises risk" in detail
        assert_reads_like_an_analyst_would(page)

        charts = ("chart-events", "chart-bands", "chart-latency", "chart-lag", "chart-rates")
        assert page.locator(".chart canvas").count() == len(charts) + 1
        for chart in (*charts, "chart-sales"):
            assert _chart_points(page, chart) > 0, f"{chart} has nothing to draw"
        assert page.locator("#kpi-decisions").inner_text() not in ("–", "0")
        page.screenshot(path=str(artifact_dir / "dashboard.png"), full_page=True)

    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        reviews = [orjson.loads(r.value) for r in read_topic(log, settings.topics.reviews.name)]
    finally:
        log.close()
    assert [(r["alert_id"], r["verdict"]) for r in reviews] == [(alert_id, "false_positive")]
    assert reviews[0]["note"] == "reviewed from the dashboard"


# -- the real pipeline: simulator → detector → log → service → browser -----------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "shopsentry", *args]


@pytest.fixture
def pipeline_env(tmp_path: Path) -> dict[str, str]:
    """A data dir with a trained champion (small simulated history, few trees)."""
    env = {
        **os.environ,
        "SHOPSENTRY_DATA_DIR": str(tmp_path / "data"),
        "SHOPSENTRY_LOG_FSYNC": "never",
        # A low alert threshold so a short run yields a steady stream of alerts.
        "SHOPSENTRY_DETECTOR__THRESHOLD": "0.3",
    }
    history = tmp_path / "history"
    steps = [
        (
            "simulate",
            "--days",
            "21",
            "--users",
            "800",
            "--fraud-share",
            "0.08",
            "--out",
            str(history),
        ),
        ("train", "--history", str(history), "--trees", "30"),
    ]
    for step in steps:
        result = subprocess.run(
            _cli(*step), env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"{step[0]} failed:\n{result.stdout}\n{result.stderr}"
    return env


class Children:
    """Child processes this test starts, stopped (SIGINT, then kill) by their own handles."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(_cli(*args), env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_dashboard_follows_the_real_pipeline(
    tmp_path: Path,
    pipeline_env: dict[str, str],
    browser_page: Any,
    live_server: Any,
    artifact_dir: Path,
) -> None:
    from shopsentry.api import create_app

    settings = Settings(data_dir=Path(pipeline_env["SHOPSENTRY_DATA_DIR"]), log_fsync="never")
    keys = make_keys(settings)
    page = browser_page
    with live_server(create_app(settings)) as server, Children(pipeline_env, tmp_path) as children:
        page.goto(f"{server.url}/dashboard?interval=500")
        page.fill("#api-key", keys.analyst)
        page.click("#key-form button")
        page.wait_for_selector("#conn-status.ok", timeout=20_000)

        children.start("detect", "detect", "--workers", "1", "--metrics-port", "0")
        simulator = children.start(
            "simulate", "simulate", "--speed", "120", "--duration", "2h", "--users", "800",
            "--fraud-share", "0.15", "--rate", "6000/h", "--seed", "11",
        )  # fmt: skip

        rows = "#alert-table tbody tr[data-status=open]"
        page.wait_for_selector(rows, timeout=90_000)
        wait_for_more_alerts(page, timeout_ms=90_000)
        assert simulator.poll() is None, "alerts must arrive while the simulator is still running"

        # A source posting through the API joins the same stream: the detector scores it.
        ingested = purchase_json("api-ingest-1", user_id="u-api-1", amount=2500.0)
        accepted = httpx.post(
            f"{server.url}/v1/events", json=ingested, headers=keys.header(keys.web)
        )
        assert accepted.status_code == 202
        store = server.app.state.services.store
        wait_for(
            lambda: store.decision_of("api-ingest-1") is not None,
            "the detector's decision on the purchase posted to the API",
            timeout=90,
        )

        alert_id = page.locator(rows).first.get_attribute("data-alert-id")
        assert alert_id and alert_id.startswith("alert-")
        # By its id: newer alerts keep arriving on top, so "the first row" moves.
        row = page.locator(f'#alert-table tbody tr[data-alert-id="{alert_id}"]')
        row.locator("button.review-fraud").click()
        reviewed = f'#alert-table tbody tr[data-alert-id="{alert_id}"][data-status=reviewed]'
        page.wait_for_selector(reviewed, timeout=20_000)
        page.wait_for_function(
            "() => document.querySelector('#kpi-reviewed').textContent === '1'", timeout=20_000
        )
        page.wait_for_function(
            "() => window.shopsentryCharts['chart-bands'].data.slice(1).flat().some((v) => v > 0)",
            timeout=20_000,
        )
        page.screenshot(path=str(artifact_dir / "dashboard-pipeline.png"), full_page=True)

    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        reviews = [orjson.loads(r.value) for r in read_topic(log, settings.topics.reviews.name)]
    finally:
        log.close()
    assert [(r["alert_id"], r["verdict"]) for r in reviews] == [(alert_id, "confirmed_fraud")]
