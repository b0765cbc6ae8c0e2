from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from shopsentry.rules.backtest import backtest
from shopsentry.rules.language import RuleSyntaxError
from shopsentry.rules.model import ListEntry

AS_OF = datetime(2026, 3, 20, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path):
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    c.execute("create schema ml_features; create schema staging")
    c.execute(
        """create macro ts(x) as cast(x as timestamp);
        create table ml_features.training_set as select * from (values
        ('e1','u1','o1', 900.0, ts('2026-03-01 10:00'), true, 'stolen', ts('2026-03-05'), 1.0, 9.0),
        ('e2','u2','o2', 800.0, ts('2026-03-01 11:00'), false, null,     null, 1.0, 8.0),
        ('e3','u3','o3',  20.0, ts('2026-03-01 12:00'), true, 'ato', ts('2026-03-04'), 0.0, 1.0),
        ('e4','u4','o4', 700.0, ts('2026-03-02 09:00'), true, 'stolen', ts('2026-04-30'), 1.0, 7.0),
        ('e5','u5','o5', 650.0, ts('2026-03-02 10:00'), false, null,     null, 1.0, null),
        ('e6','u6','o6', 600.0, ts('2026-03-03 10:00'), false, null,     null, 0.0, 2.0)
        ) t(event_id, user_id, order_id, amount, occurred_at, is_fraud, scenario, label_known_at,
            new_device, amount_ratio)"""
    )
    c.execute(
        """create table staging.stg_purchases as select * from (values
        ('e1','c1','US'), ('e2','c2','US'), ('e3','c3','FR'), ('e4','c4','US'),
        ('e5','bad','US'), ('e6','c6','US')) t(event_id, card_fingerprint, country)"""
    )
    c.execute(
        """create table staging.stg_decisions as select * from (values
        ('e1', 0.95, 'decline'), ('e2', 0.2, 'approve'), ('e3', 0.8, 'review'),
        ('e4', 0.3, 'approve'), ('e5', 0.1, 'approve')) t(event_id, probability, band)"""
    )
    yield c
    c.close()


def test_a_block_rule_is_tallied_per_day_and_in_total(conn):
    report = backtest(
        conn, "purchase.amount > 500.0 && features.new_device == 1.0", "block", as_of=AS_OF
    )
    t = report.total
    assert (t.purchases, t.hits) == (6, 4)  # e1, e2, e4, e5
    assert t.fraud_caught == 1  # e1; e4's chargeback is not known until April
    assert t.fraud_known == 2 and t.recall == 0.5 and t.precision == 0.25
    assert t.overlap_with_model == 1 and t.extra_reviews == 3
    assert t.amount_saved == 900.0 and t.amount_blocked_wrongly == 800.0 + 700.0 + 650.0
    days = {d.isoformat(): tally.hits for d, tally in report.days.items()}
    assert days == {"2026-03-01": 2, "2026-03-02": 2, "2026-03-03": 0}


def test_missing_values_are_errors_counted_not_hits(conn):
    report = backtest(conn, "features.amount_ratio > 5.0", "review", as_of=AS_OF)
    assert report.total.hits == 3 and report.total.errors == 1  # e5 has no ratio


def test_the_score_and_lists_are_what_the_detector_had(conn):
    entries = [ListEntry(list="block", entity="card", value="bad")]
    report = backtest(
        conn,
        "score < 0.5 && purchase.card_fingerprint in lists.block.card",
        "block",
        as_of=AS_OF,
        entries=entries,
    )
    assert report.total.hits == 1
    window = backtest(conn, "score > 0.5", "review", since=date(2026, 3, 2), as_of=AS_OF)
    assert window.total.purchases == 3 and window.total.errors == 1  # e6 was never decided


def test_a_rule_naming_an_unknown_feature_is_refused(conn):
    with pytest.raises(RuleSyntaxError, match=r"features\.nope"):
        backtest(conn, "features.nope > 1.0", "block", as_of=AS_OF)


def test_only_the_columns_the_rule_reads_are_loaded(conn):
    from shopsentry.rules.backtest import load_history

    keys = {"event_id", "occurred_at", "amount", "is_fraud", "label_known_at", "score",
            "model_band"}  # fmt: skip
    narrow = load_history(conn, None, None, {"features.new_device", "score"})
    assert set(narrow) == keys | {"f.new_device"}
    with_field = load_history(conn, None, None, {"purchase.card_fingerprint"})
    assert set(with_field) == keys | {"p.card_fingerprint"}
    assert list(with_field["p.card_fingerprint"]) == ["c1", "c2", "c3", "c4", "bad", "c6"]
    everything = load_history(conn, None, None)
    assert {"f.new_device", "f.amount_ratio", "p.country", "p.card_fingerprint"} <= set(everything)
