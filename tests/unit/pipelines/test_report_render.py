"""The daily fraud report renders from query rows alone: KPIs, charts as inline SVG,
the alert table, escaping of data, and byte-identical output for the same data."""

from __future__ import annotations

import importlib
import time
from datetime import date, timedelta

import pytest

from shopsentry.warehouse import queries

# The package re-exports the job function under the module's name; take the module.
report_module = importlib.import_module("shopsentry.pipelines.daily_fraud_report")

DAY = date(2026, 11, 24)


def kpi_row(day: date, alerts: int) -> dict:
    return {
        "day": day, "orders": 100, "decided_orders": 100, "alerts": alerts, "declined": 1,
        "alert_rate": alerts / 100, "confirmed_fraud": 3, "detected_fraud": 2,
        "fraud_detection_rate": 2 / 3, "reviewed_alerts": 4, "review_confirmed": 3,
        "review_false_positives": 1, "false_positive_rate": 0.25, "review_precision": 0.75,
        "loss_prevented": 420.5, "fraud_loss": 80.0, "revenue": 12345.67,
        "detection_latency_avg_ms": 120.0, "detection_latency_p50_ms": 110.0,
        "detection_latency_p95_ms": 240.0, "detection_latency_max_ms": 400,
    }  # fmt: skip


@pytest.fixture
def fake_queries(monkeypatch):
    trend = [kpi_row(DAY - timedelta(days=i), alerts=5 + i) for i in range(13, -1, -1)]
    monkeypatch.setattr(queries, "fraud_kpis", lambda warehouse, start, end: trend)
    monkeypatch.setattr(
        queries,
        "daily_sales",
        lambda warehouse, start, end: [{"day": DAY, "orders": 100, "revenue": 12345.67}],
    )
    monkeypatch.setattr(
        queries,
        "top_scenarios",
        lambda warehouse, start, end, limit: [
            {
                "scenario": "card_testing",
                "fraud_orders": 4,
                "detected": 3,
                "fraud_amount": 99.0,
                "loss_prevented": 70.0,
            }
        ],
    )
    monkeypatch.setattr(
        queries,
        "alerts_on",
        lambda settings, day, limit: [
            {
                "alert_id": "alert-<script>", "event_id": "e1", "order_id": "o1", "user_id": "u1",
                "occurred_at": None, "amount": 55.0, "fraud_probability": 0.91,
                "alert_severity": "high",
                "band": "review", "review_verdict": None, "is_confirmed_fraud": True,
                "fraud_scenario": "card_testing", "detection_latency_ms": 100,
            }
        ],
    )  # fmt: skip
    fake_model_ops(monkeypatch)
    return trend


QUALITY = {
    "day": DAY, "model_role": "champion", "model_version": "3", "purchases": 500, "alerts": 9,
    "alert_rate": 0.018, "labelled_frauds": 4, "true_positives": 3,
    "precision_at_threshold": 1 / 3, "recall_at_threshold": 0.75, "pr_auc": 0.61,
    "label_maturity": 0.12, "as_of": "2026-11-25 06:00:00",
}  # fmt: skip


def fake_model_ops(monkeypatch) -> None:
    """The monitoring tables' rows: one champion day, one drifted top feature, one not."""
    monkeypatch.setattr(queries, "model_quality", lambda warehouse, start, end: [QUALITY])
    monkeypatch.setattr(queries, "model_comparison", lambda warehouse, start, end: [])
    monkeypatch.setattr(
        queries,
        "score_drift",
        lambda warehouse, start, end: [
            {"day": DAY, "model_version": "3", "model_role": "champion", "purchases": 500,
             "psi": 0.31}
        ],
    )  # fmt: skip
    monkeypatch.setattr(
        queries,
        "feature_drift",
        lambda settings, day: [
            {"feature": "amount", "psi": 1.2, "importance_rank": 1, "missing_share": 0.0,
             "reference_missing_share": 0.0},
            {"feature": "new_ip", "psi": 0.5, "importance_rank": None, "missing_share": 0.0,
             "reference_missing_share": 0.0},
        ],
    )  # fmt: skip


def test_report_has_a_model_quality_and_drift_section(settings, fake_queries) -> None:
    html = report_module.daily_fraud_report(settings, DAY).path.read_text()
    section = html.split("<h2>Model quality and drift</h2>")[1].split("<h2>")[0]
    assert "champion v3" in section and "33.3%" in section and "12.0%" in section  # maturity
    assert "labels known by 2026-11-25 06:00:00 UTC" in section
    drift = section.split('id="feature-drift"')[1]
    amount, new_ip = drift.split("<tr")[2:4]
    assert 'class="bad"' in amount and ">amount<" in amount  # a top-10 feature over 0.2
    assert 'class="bad"' not in new_ip  # over 0.2, but the model does not use it
    assert "Score PSI of the champion v3: 0.310 (over 0.1)" in section


def test_report_has_kpis_charts_and_alerts(settings, fake_queries) -> None:
    result = report_module.daily_fraud_report(settings, DAY)
    html = result.path.read_text()
    assert result.path == settings.reports_dir / "fraud-report-2026-11-24.html"
    assert result.summary["alerts"] == 5 and result.summary["false_positive_rate"] == 0.25
    assert '<div class="value" id="kpi-alerts">5 (5.0%)</div>' in html
    assert "bad" in html.split('id="kpi-fpr"')[0].rsplit("<div", 1)[1]  # FPR 25% > 5% target
    for chart in ("alerts", "precision", "revenue", "latency", "scenarios"):
        section = html.split(f'id="chart-{chart}">')[1]
        assert section.lstrip().startswith("<svg")
    assert "alert-&lt;script&gt;" in html and "alert-<script>" not in html
    assert "card_testing" in html


def test_rerun_writes_an_identical_file(settings, fake_queries) -> None:
    first = report_module.daily_fraud_report(settings, DAY).path.read_bytes()
    second = report_module.daily_fraud_report(settings, DAY).path.read_bytes()
    assert first == second


def test_empty_warehouse_gives_a_report_that_says_so(settings, monkeypatch) -> None:
    for name in ("fraud_kpis", "daily_sales", "top_scenarios"):
        monkeypatch.setattr(queries, name, lambda settings, **kw: [])
    monkeypatch.setattr(queries, "alerts_on", lambda settings, day, limit: [])

    def not_built(settings, **kw):
        from shopsentry.warehouse.db import WarehouseError

        raise WarehouseError("the warehouse lacks a table this query needs")

    monkeypatch.setattr(queries, "model_quality", not_built)
    html = report_module.daily_fraud_report(settings, DAY).path.read_text()
    assert "No model quality in the warehouse yet" in html
    assert "No purchases in the warehouse for this period." in html
    assert "No alerts on this day." in html


def test_report_waits_out_a_running_etl(settings, fake_queries, monkeypatch) -> None:
    from shopsentry.warehouse.db import WarehouseBusy

    real = queries.fraud_kpis
    calls = {"n": 0}

    def busy_then_free(warehouse, start, end):
        calls["n"] += 1
        if calls["n"] == 1:
            raise WarehouseBusy(warehouse)
        return real(warehouse, start, end)

    monkeypatch.setattr(queries, "fraud_kpis", busy_then_free)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    result = report_module.daily_fraud_report(settings, DAY)
    assert calls["n"] == 2 and result.summary["alerts"] == 5
    monkeypatch.setattr(report_module, "BUSY_WAIT_S", 0.0)

    def always_busy(warehouse, start, end):
        raise WarehouseBusy(warehouse)

    monkeypatch.setattr(queries, "fraud_kpis", always_busy)
    with pytest.raises(WarehouseBusy):
        report_module.daily_fraud_report(settings, DAY)


def test_latency_on_an_accelerated_clock_is_not_shown_negative(fake_queries, tmp_path):
    from shopsentry.config import Settings

    accelerated = {"detection_latency_p50_ms": -300_000.0, "detection_latency_p95_ms": -645_212.0}
    trend = [{**kpi_row(DAY, alerts=5), **accelerated}]
    rows = report_module.real_clock_latency(trend)
    assert rows[0]["detection_latency_p95_ms"] is None and rows[0]["clock_accelerated"]
    queries.fraud_kpis = lambda warehouse, start, end: trend  # the fixture patched the module
    result = report_module.daily_fraud_report(Settings(data_dir=tmp_path), DAY)
    html = result.path.read_text()
    assert "645" not in html.split('id="kpi-latency"')[1][:200]
    assert "n/a on an accelerated clock" in html
    assert result.summary["detection_latency_p95_ms"] is None
