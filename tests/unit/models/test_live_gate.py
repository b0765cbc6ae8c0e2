"""The live gate on crafted row-level scores: promoted when the challenger is more precise
at the champion's recall, refused when it is not, refused without enough matured labels;
and the warehouse query (labels known by then only, scored by both only) on DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from shopsentry.config import Settings
from shopsentry.models.live_gate import judge, live_evidence, threshold_for_recall

T = 0.7


def crafted() -> tuple[np.ndarray, np.ndarray]:
    """40 frauds among 1,000 purchases; the champion catches 30 of them at 0.7 and, above
    them, flags 30 legitimate purchases (precision 0.5 at its recall)."""
    y = np.zeros(1000, dtype=bool)
    y[:40] = True
    champion = np.full(1000, 0.1)
    champion[:30] = 0.8  # caught frauds
    champion[40:70] = 0.9  # false positives
    return y, champion


def test_a_more_precise_challenger_at_equal_recall_is_promoted() -> None:
    y, champion = crafted()
    challenger = np.full(1000, 0.05)
    challenger[:30] = 0.6  # the same 30 frauds, at a lower score
    challenger[40:50] = 0.65  # only 10 false positives above that
    challenger[50:70] = 0.55  # the other 20 below it
    verdict = judge(y, champion, challenger, threshold=T, min_labelled_frauds=30)
    assert verdict.promote
    assert verdict.champion_recall == pytest.approx(0.75)
    assert verdict.champion_precision == pytest.approx(0.5)
    assert verdict.champion_threshold == pytest.approx(0.8)
    assert verdict.challenger_threshold == pytest.approx(0.6)
    assert verdict.challenger_recall == pytest.approx(0.75)
    assert verdict.challenger_precision == pytest.approx(0.75)
    assert verdict.reason.startswith("better live precision at the champion's recall 0.750")
    assert "30 of 40 labelled frauds" in verdict.reason


def test_a_less_precise_challenger_is_refused_and_says_why() -> None:
    y, champion = crafted()
    challenger = champion.copy()
    challenger[100:200] = 0.9  # flags 100 more legitimate purchases above its threshold
    verdict = judge(y, champion, challenger, threshold=T, min_labelled_frauds=30)
    assert not verdict.promote
    assert verdict.challenger_precision == pytest.approx(30 / 160)
    assert verdict.reason.startswith("no better live precision")
    # a copy of the champion ties (never promoted), nor is a gain below the margin
    same = judge(y, champion, champion, threshold=T, min_labelled_frauds=30)
    assert not same.promote and same.challenger_precision == same.champion_precision == 0.5
    better = champion.copy()
    better[60:70] = 0.1  # 20 false positives instead of 30: precision 0.6 vs 0.5
    assert judge(y, champion, better, threshold=T, min_labelled_frauds=30).promote
    margin = judge(y, champion, better, threshold=T, min_labelled_frauds=30, min_precision_gain=0.2)
    assert not margin.promote and "gain needed > 0.2" in margin.reason


def test_not_enough_matured_labels_decides_nothing() -> None:
    y, champion = crafted()
    verdict = judge(y, champion, champion * 0.5, threshold=T, min_labelled_frauds=41)
    assert not verdict.promote and verdict.challenger_precision is None
    assert verdict.reason == (
        "not enough matured labels: 40 labelled frauds among 1,000 purchases both models"
        " scored (need 41)"
    )
    empty = np.zeros(0)
    none = judge(empty.astype(bool), empty, empty, threshold=T, min_labelled_frauds=1)
    assert not none.promote and none.purchases == 0


def test_a_champion_that_catches_nothing_leaves_no_recall_to_match() -> None:
    y, _ = crafted()
    low = np.full(1000, 0.1)
    verdict = judge(y, low, np.linspace(0, 1, 1000), threshold=T, min_labelled_frauds=10)
    assert not verdict.promote and "catches none of the 40 labelled frauds" in verdict.reason


def test_threshold_for_recall_with_ties_keeps_at_least_that_many() -> None:
    y = np.array([True, True, True, False])
    scores = np.array([0.9, 0.5, 0.5, 0.7])
    assert threshold_for_recall(y, scores, 1) == 0.9
    assert threshold_for_recall(y, scores, 2) == 0.5  # the tie brings the third along
    assert np.count_nonzero(y & (scores >= 0.5)) == 3


def staging_tables(con: Any) -> None:
    """The columns of staging.stg_decisions and stg_fraud_labels the live gate reads
    (empty, replacing any)."""
    con.execute("create schema if not exists staging")
    con.execute(
        "create or replace table staging.stg_decisions (event_id varchar,"
        " model_version varchar, probability double, challenger_version varchar,"
        " challenger_probability double, decided_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_fraud_labels (event_id varchar,"
        " is_fraud boolean, known_at timestamp)"
    )


def test_the_evidence_is_what_both_scored_with_labels_known_by_then(tmp_path) -> None:
    from shopsentry.warehouse.db import connect

    settings = Settings(data_dir=tmp_path)
    at = datetime(2026, 11, 20, 12)
    with connect(settings) as con:
        staging_tables(con)
        rows = [
            ("e1", "1", 0.9, "2", 0.8, at),  # fraud, known in time
            ("e2", "1", 0.2, "2", 0.3, at),  # fraud, known only after as_of: legitimate so far
            ("e3", "1", 0.1, "2", 0.1, at),  # charged back, then a review said legitimate
            ("e4", "1", 0.5, None, None, at),  # no challenger: left out
            ("e5", "9", 0.5, "2", 0.5, at),  # another champion: left out
            ("e6", "1", 0.4, "3", 0.4, at),  # another challenger: left out
            ("e7", "1", 0.6, "2", 0.6, at + timedelta(days=30)),  # decided after as_of
        ]
        con.executemany("insert into staging.stg_decisions values (?, ?, ?, ?, ?, ?)", rows)
        labels = [
            ("e1", True, at + timedelta(days=2)),
            ("e2", True, at + timedelta(days=20)),
            ("e3", True, at + timedelta(days=1)),
            ("e3", False, at + timedelta(days=3)),
        ]
        con.executemany("insert into staging.stg_fraud_labels values (?, ?, ?)", labels)
    evidence = live_evidence(settings, "1", "2", datetime(2026, 11, 30, tzinfo=UTC))
    got = sorted(
        zip(evidence.champion, evidence.challenger, evidence.is_fraud, strict=True),
        reverse=True,
    )
    assert got == [(0.9, 0.8, True), (0.2, 0.3, False), (0.1, 0.1, False)]


def test_no_staging_yet_is_a_warehouse_error(tmp_path) -> None:
    from shopsentry.warehouse.db import WarehouseError, WarehouseMissing, connect

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(WarehouseMissing):
        live_evidence(settings, "1", "2", datetime.now(UTC))
    with connect(settings) as con:
        con.execute("select 1")
    with pytest.raises(WarehouseError, match="no live challenger evidence"):
        live_evidence(settings, "1", "2", datetime.now(UTC))
