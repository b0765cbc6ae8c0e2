"""Health, metrics, docs, the dashboard page and its summary, and warehouse analytics."""

from __future__ import annotations

import re
import sys
import time
import types
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.api import summary
from shopsentry.config import Settings
from shopsentry.warehouse.db import WarehouseBusy
from tests.unit.api.factories import T0, Keys, caught_up, publish, scored, wait_for


def test_healthz_reports_log_store_and_consumer(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"log", "store", "consumer"}


def test_healthz_is_503_when_the_log_fails(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def broken() -> list[str]:
        raise OSError("disk gone")

    monkeypatch.setattr(services.log, "list_topics", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["log"] == {"ok": False, "detail": "OSError: disk gone"}


def test_metrics_are_prometheus_text_labelled_by_route_template(
    client: TestClient, keys: Keys
) -> None:
    client.get("/v1/alerts/alert-x", headers=keys.header(keys.analyst))
    client.get("/v1/alerts/alert-y", headers=keys.header(keys.analyst))
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'shopsentry_api_requests_total{method="GET",route="/v1/alerts/{alert_id}",status="404"} 2.0'
        in text
    )
    assert "shopsentry_api_request_duration_seconds_bucket" in text
    for name in (
        "shopsentry_false_positive_rate",
        "shopsentry_fraud_detection_rate",
        "shopsentry_api_alerts",
    ):
        assert re.search(rf"^{name}\b", text, re.M), name


def test_docs_and_dashboard_load_only_local_assets(client: TestClient) -> None:
    for path in ("/docs", "/dashboard", "/dashboard/rules", "/"):
        page = client.get(path)
        assert page.status_code == 200
        for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert url.startswith("/"), f"{path} loads {url} from outside the service"
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url
    page = client.get("/dashboard").text
    for chart in (
        "chart-events",
        "chart-bands",
        "chart-latency",
        "chart-lag",
        "chart-rates",
        "chart-sales",
    ):
        assert f'id="{chart}"' in page
    assert client.get("/openapi.json").json()["paths"]["/v1/events"]["post"]["summary"]
    dashboard = client.get("/dashboard")
    assert "script-src 'self'" in dashboard.headers["content-security-policy"]
    assert dashboard.headers["x-frame-options"] == "DENY"
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_dashboard_summary_aggregates_the_store(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    probabilities = [0.1, 0.2, 0.8, 0.99, 0.3, 0.75]
    items = [scored(i, probability=p, user_id=f"u{i}") for i, p in enumerate(probabilities)]
    items += [scored(10 + i, probability=0.1, at=T0 + timedelta(minutes=3)) for i in range(4)]
    publish(log, api_settings, items)
    wait_for(lambda: caught_up(log, "api-alerts"), "store consumer")
    h = keys.header(keys.analyst)
    client.post("/v1/alerts/alert-ev-0002/review", json={"verdict": "false_positive"}, headers=h)

    response = client.get("/v1/dashboard/summary", params={"window_minutes": 20}, headers=h)
    assert response.status_code == 200
    s = response.json()
    assert s["totals"]["decisions"] == 10
    assert s["totals"]["flagged"] == 3
    assert s["totals"]["false_positive_rate"] == 1.0
    series = s["series"]
    # The window starts at the data, not 20 minutes back.
    assert series["t"][0] == int(T0.timestamp())
    first = 0
    assert series["decisions_by_band"]["approve"][first] == 3
    assert series["decisions_by_band"]["review"][first] == 2
    assert series["decisions_by_band"]["decline"][first] == 1
    assert series["fraud_rate"][first] == 0.5
    assert series["fraud_rate"][first + 3] == 0.0
    assert series["fraud_rate"][first + 1] is None
    assert series["latency_p95_ms"][first] == 45.0  # nearest rank of 40..45
    store = client.app.state.services.store  # type: ignore[attr-defined]
    later = summary.minute_series(store, 20, now=time.time() + 60)
    assert sum(later["events_per_minute"]["purchases"]) == 10  # once the minute is over
    assert [a["alert_id"] for a in s["alert_queue"]][:2] == ["alert-ev-0005", "alert-ev-0003"]
    assert s["alert_queue"][-1]["status"] == "reviewed"
    assert s["daily_sales"]["source"] == "stream"
    expected: dict[str, dict[str, Any]] = {}
    for item in items:
        day = expected.setdefault(
            item.purchase.occurred_at.date().isoformat(), {"orders": 0, "revenue": 0.0}
        )
        day["orders"] += 1
        day["revenue"] += item.purchase.amount
    rows = [{k: r[k] for k in ("day", "orders", "revenue")} for r in s["daily_sales"]["rows"]]
    assert rows == [{"day": d, **v} for d, v in sorted(expected.items())]
    assert client.get("/v1/dashboard/summary", headers=keys.header(keys.web)).status_code == 403


def test_chart_window_follows_the_data_not_a_fixed_span(tmp_path: Path) -> None:
    from shopsentry.api.read_model import AlertReadModel

    store = AlertReadModel(tmp_path / "alerts.db", topics={"purchases": "purchase-events"})
    try:
        assert summary.chart_window(store, 60, now=60_000.0) == (1000, 1000)
        store._db.executemany(
            "insert into traffic (minute, topic, count) values (?, 'purchase-events', 5)",
            [(m,) for m in range(995, 1001)],
        )
        # Six minutes of data: six points, not 60.
        assert summary.chart_window(store, 60, now=60_030.0) == (995, 1000)
        assert summary.chart_window(store, 3, now=60_030.0) == (998, 1000)
        # Half way through minute 1000, its 5 events are a pace of 10 a minute, not a fall.
        series = summary.minute_series(store, 60, now=60_030.0)
        assert series["events_per_minute"]["purchases"] == [5.0] * 5 + [10.0]
        # A minute that is over is drawn as counted.
        later = summary.minute_series(store, 60, now=60_070.0)
        assert later["events_per_minute"]["purchases"] == [5.0] * 6
    finally:
        store.close()


def test_demo_keys_are_listed_without_opening_a_store() -> None:
    from shopsentry.api.app import describe_keys
    from shopsentry.api.security import DEMO_KEYS, demo_keys

    rows = describe_keys(demo_keys())
    assert [r["role"] for r in rows] == [k[2] for k in DEMO_KEYS]
    assert all(r["token"].startswith("ssk_demo") for r in rows)


def test_analytics_are_503_until_the_warehouse_is_built(client: TestClient, keys: Keys) -> None:
    for path in ("/v1/analytics/daily-sales", "/v1/analytics/fraud-kpis"):
        response = client.get(path, headers=keys.header(keys.analyst))
        assert response.status_code == 503
        assert "shopsentry batch run" in response.json()["detail"]


@pytest.fixture
def warehouse_file(api_settings: Settings) -> Path:
    path = api_settings.warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # only its existence matters to the API; queries are replaced below
    return path


@pytest.fixture
def fake_queries(warehouse_file: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-in warehouse queries: daily_sales answers one row, fraud_kpis finds it busy."""
    calls: list[dict[str, Any]] = []

    def daily_sales(warehouse: Path, **kwargs: Any) -> list[dict[str, Any]]:
        calls.append(kwargs)
        return [{"day": date(2026, 11, 19), "orders": 3, "revenue": 99.5}]

    def fraud_kpis(warehouse: Path, **kwargs: Any) -> list[dict[str, Any]]:
        raise WarehouseBusy(warehouse_file)

    module = types.ModuleType("shopsentry.warehouse.queries")
    module.daily_sales = daily_sales  # type: ignore[attr-defined]
    module.fraud_kpis = fraud_kpis  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shopsentry.warehouse.queries", module)
    return calls


def test_analytics_map_warehouse_rows_and_errors(
    client: TestClient, keys: Keys, fake_queries: list[dict[str, Any]]
) -> None:
    calls = fake_queries
    h = keys.header(keys.analyst)

    sales = client.get("/v1/analytics/daily-sales", params={"start": "2026-11-01"}, headers=h)
    assert sales.status_code == 200
    assert sales.json()["source"] == "warehouse"
    rows = [(r["day"], r["orders"], r["revenue"]) for r in sales.json()["rows"]]
    assert rows == [("2026-11-19", 3, 99.5)]
    assert calls == [{"start": date(2026, 11, 1), "end": None}]
    busy = client.get("/v1/analytics/fraud-kpis", headers=h)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "5"
    assert (
        client.get(
            "/v1/analytics/daily-sales", params={"start": "yesterday"}, headers=h
        ).status_code
        == 422
    )


def query_counts(text: str) -> dict[str, float]:
    pattern = r'^shopsentry_query_duration_seconds_count\{query="([^"]+)"\} (\S+)$'
    return {name: float(n) for name, n in re.findall(pattern, text, re.M)}


def test_warehouse_queries_are_timed_answered_or_failed(
    client: TestClient, keys: Keys, api_settings: Settings, fake_queries: list[dict[str, Any]]
) -> None:
    h = keys.header(keys.analyst)
    assert query_counts(client.get("/metrics").text) == {}
    assert client.get("/v1/analytics/daily-sales", headers=h).status_code == 200
    assert client.get("/v1/analytics/fraud-kpis", headers=h).status_code == 503
    summary = client.get("/v1/dashboard/summary", headers=h).json()
    assert summary["daily_sales"]["source"] == "warehouse"
    assert len(fake_queries) == 2
    text = client.get("/metrics").text
    assert query_counts(text) == {"daily_sales": 2.0, "fraud_kpis": 1.0}
    assert 'shopsentry_query_duration_seconds_bucket{le="30.0",query="daily_sales"} 2.0' in text

    api_settings.warehouse_path.unlink()  # no warehouse, no query: nothing to time
    assert client.get("/v1/analytics/daily-sales", headers=h).status_code == 503
    assert query_counts(client.get("/metrics").text)["daily_sales"] == 2.0


def test_traffic_is_counted_at_log_time_unless_the_clock_is_not_live() -> None:
    from shopsentry.api.read_model import traffic_minute
    from shopsentry.bus.base import Record

    now = 1_800_000_000_000

    def minute(ts: int) -> int:
        return traffic_minute(Record("t", 0, 0, ts, None, b""), now)

    assert minute(now - 5 * 60_000) == (now - 5 * 60_000) // 60_000  # live feed, a bit behind
    assert minute(now + 3_600_000) == now // 60_000  # accelerated clock ahead of the wall
    assert minute(now - 3 * 86_400_000) == now // 60_000  # a replay of old records
