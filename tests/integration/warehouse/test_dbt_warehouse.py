"""The dbt project on DuckDB, fed by the real loader from the real embedded log:
staging types and quarantines, the marts agree with the events, reruns change nothing,
late labels and reviews update their past day, a backfill lands, a bad row fails the
data-quality checks with a clear message, and the YAML unit tests pass."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from shopsentry.warehouse.db import DataQualityFailed, connect
from tests.unit.warehouse.factories import BAD_PURCHASES, EventSet, make_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANALYTICS = [
    "analytics.fct_orders",
    "analytics.daily_sales",
    "analytics.hourly_sales",
    "analytics.daily_sales_by_segment",
    "analytics.funnel_daily",
    "analytics.fraud_kpis_daily",
    "analytics.fraud_scenarios_daily",
    "analytics.dim_customers",
    "ml_features.user_behavior",
    "staging.stg_quarantine",
]


def produce(settings, records: dict[str, list[tuple[bytes, bytes]]]) -> None:
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        producer = log.producer()
        for topic, items in records.items():
            for key, value in items:
                producer.send(topic, value, key)
        producer.flush()
        producer.close()
    finally:
        log.close()


def snapshot(settings) -> dict[str, list[tuple]]:
    """Every analytics table's rows (minus load times, which a rebuild may move)."""
    out = {}
    with connect(settings.warehouse_path, read_only=True) as con:
        for table in ANALYTICS:
            cols = [
                r[0] for r in con.execute(f"describe {table}").fetchall() if r[0] != "_loaded_at"
            ]
            out[table] = con.execute(
                f"select {', '.join(cols)} from {table} order by all"
            ).fetchall()
    return out


def hold_back(events: EventSet, topics: set[str]) -> tuple[dict, dict]:
    first = {t: r for t, r in events.by_topic.items() if t not in topics}
    later = {t: r for t, r in events.by_topic.items() if t in topics}
    return first, later


@pytest.fixture
def built(settings):
    """A warehouse built from the factory events (labels and reviews held back)."""
    from shopsentry.pipelines.hourly_etl import hourly_etl

    events = make_events()
    first, later = hold_back(events, {"fraud-labels", "alert-reviews"})
    produce(settings, {**first, "purchase-events": first["purchase-events"] + BAD_PURCHASES})
    result = hourly_etl(settings)
    return settings, events, later, result


def test_marts_agree_with_the_events(built) -> None:
    settings, events, _later, result = built
    assert result.models_built >= 15 and result.checks_passed > 50
    by_day: dict[date, list[float]] = {}
    for p in events.purchases:
        by_day.setdefault(p.occurred_at.date(), []).append(p.amount)
    with connect(settings.warehouse_path, read_only=True) as con:
        daily = con.execute(
            "select purchase_date, total_orders, total_revenue"
            " from analytics.daily_sales order by 1"
        ).fetchall()
        quarantine = con.execute(
            "select reject_reason, count(*) from staging.stg_quarantine group by 1 order by 1"
        ).fetchall()
        alerts = con.execute("select sum(alerts) from analytics.fraud_kpis_daily").fetchall()[0][0]
        customers = con.execute(
            "select count(*), sum(orders) from analytics.dim_customers"
        ).fetchall()[0]
    assert [(d, n, round(float(r), 2)) for d, n, r in daily] == [
        (d, len(a), round(sum(a), 2)) for d, a in sorted(by_day.items())
    ]
    assert quarantine == [
        ("amount: missing or not a number", 1),
        ("amount: must be greater than 0", 1),
        ("raw_json: not valid JSON", 2),
    ]
    assert alerts == len(events.alerted_ids)
    assert customers == (len({p.user_id for p in events.purchases}), len(events.purchases))


def test_rerun_changes_nothing_and_builds_nothing_new(built) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    settings, _events, _later, _result = built
    before = snapshot(settings)
    again = hourly_etl(settings)
    assert again.records_read == 0
    assert snapshot(settings) == before


def test_late_labels_and_reviews_update_their_days(built) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    settings, events, later, _result = built
    with connect(settings.warehouse_path, read_only=True) as con:
        before = con.execute(
            "select sum(confirmed_fraud), sum(reviewed_alerts) from analytics.fraud_kpis_daily"
        ).fetchall()[0]
    assert before == (0, 0)
    produce(settings, later)
    hourly_etl(settings)
    with connect(settings.warehouse_path, read_only=True) as con:
        after = con.execute(
            "select sum(confirmed_fraud), sum(reviewed_alerts), sum(review_false_positives),"
            " sum(detected_fraud) from analytics.fraud_kpis_daily"
        ).fetchall()[0]
        fpr = con.execute(
            "select sum(review_false_positives) / sum(reviewed_alerts)"
            " from analytics.fraud_kpis_daily"
        ).fetchall()[0][0]
    false_positives = len(events.alerted_ids - events.fraud_ids)
    assert after == (
        len(events.fraud_ids),
        len(events.alerted_ids),
        false_positives,
        len(events.fraud_ids & events.alerted_ids),
    )
    assert fpr == pytest.approx(false_positives / len(events.alerted_ids))


def test_backfill_of_a_past_day_from_history(built, tmp_path: Path) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    settings, _events, _later, _result = built
    past = make_events(users=5, purchases=20, start=_past_start(), days=1, seed=11)
    history = tmp_path / "backfill"
    history.mkdir()
    lines = [v for t in ("purchase-events", "user-behavior") for _k, v in past.by_topic[t]]
    (history / "events.jsonl").write_bytes(b"\n".join(_renamed(v) for v in lines) + b"\n")
    untouched = {k: v for k, v in snapshot(settings).items() if k == "analytics.daily_sales"}
    result = hourly_etl(settings, history=history)
    assert result.rows_inserted["purchase_events"] == 20
    with connect(settings.warehouse_path, read_only=True) as con:
        days = con.execute(
            "select purchase_date, total_orders from analytics.daily_sales order by 1"
        ).fetchall()
    assert days[0] == (_past_start().date(), 20)
    assert [d for d in days[1:]] == [(r[0], r[1]) for r in untouched["analytics.daily_sales"]]
    assert hourly_etl(settings, history=history).rows_inserted == {}


def _past_start():
    from datetime import UTC, datetime

    return datetime(2026, 11, 10, tzinfo=UTC)


def _renamed(value: bytes) -> bytes:
    """Give backfilled events their own ids so they are new events, not redeliveries."""
    doc = json.loads(value)
    doc["event_id"] = "bf-" + doc["event_id"]
    if "order_id" in doc:
        doc["order_id"] = "bf-" + doc["order_id"]
    return json.dumps(doc).encode()


def test_a_bad_row_fails_the_quality_checks_clearly(built) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    settings, _events, _later, _result = built
    bad = (
        b'{"schema_version":1,"event_id":"p00001x","source":"web","user_id":"u001",'
        b'"occurred_at":"2026-11-21T10:00:00+00:00","event_type":"decision","order_id":"o1",'
        b'"amount":5,"currency":"USD","probability":0.5,"band":"maybe","threshold":0.7,'
        b'"model_version":"1","decided_at":"2026-11-21T10:00:01+00:00"}'
    )
    produce(settings, {"decisions": [(b"u001", bad)]})
    with pytest.raises(DataQualityFailed) as failed:
        hourly_etl(settings)
    assert "accepted_values_stg_decisions_band" in failed.value.message
    assert "1 failing row" in failed.value.message


def test_yaml_unit_tests_pass(built) -> None:
    from shopsentry.warehouse.dbt import DbtConfig, run_dbt

    settings, *_ = built
    result = run_dbt(DbtConfig.from_settings(settings), ["test", "--select", "test_type:unit"])
    assert len(result.nodes) >= 5
    assert all(n.status == "pass" for n in result.nodes)


def test_queries_answer_read_only_with_bound_parameters(built) -> None:
    from shopsentry.warehouse import queries

    settings, events, _later, _result = built
    day = min(p.occurred_at.date() for p in events.purchases)
    rows = queries.daily_sales(settings.warehouse_path, start=day, end=day)
    assert [r["day"] for r in rows] == [day]
    assert rows[0]["orders"] == sum(1 for p in events.purchases if p.occurred_at.date() == day)
    assert isinstance(rows[0]["revenue"], float)
    kpis = queries.fraud_kpis(settings.warehouse_path, start=day, end=day)
    assert kpis[0]["alerts"] == sum(
        1
        for p in events.purchases
        if p.event_id in events.alerted_ids and p.occurred_at.date() == day
    )
    sources = {r["segment"] for r in queries.sales_by_segment(settings.warehouse_path, "source")}
    assert sources <= {"web", "mobile", "pos"} and sources
    warehouse = settings.warehouse_path
    assert queries.daily_sales(warehouse, start=day, end=day) == rows  # read-only: repeatable
    hostile = "2026-01-01'; drop table analytics.daily_sales; --"
    with pytest.raises(Exception):  # noqa: B017 - the bound value is rejected as a date, not run
        queries.daily_sales(settings.warehouse_path, start=hostile, end=None)  # type: ignore[arg-type]
    assert queries.daily_sales(settings.warehouse_path, start=day, end=day) == rows


def test_freshness_fails_on_a_stalled_feed_but_not_on_a_new_one(built, tmp_path: Path) -> None:
    from shopsentry.config import Settings
    from shopsentry.pipelines.common import Interval
    from shopsentry.pipelines.hourly_etl import check_quality, hourly_etl

    fresh = Settings(data_dir=tmp_path / "new-deployment")
    started = hourly_etl(fresh)
    assert "source.shopsentry.raw.purchase_events has no rows yet" in started.warnings

    settings, *_ = built
    with connect(settings.warehouse_path) as con:
        con.execute("update raw.purchase_events set _loaded_at = _loaded_at - interval 3 day")
    with pytest.raises(DataQualityFailed) as stale:
        check_quality(settings, Interval.previous_hour())
    assert "source.shopsentry.raw.purchase_events is stale" in stale.value.message
    assert "raw.user_behavior" not in stale.value.message
