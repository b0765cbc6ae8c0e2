"""The live gate on crafted row-level scores: promoted when the challenger is more precise
at the champion's recall, refused when it is not, refused without enough matured labels;
and the warehouse query (labels known by then only, scored by both only) on DuckDB."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from shopsentry.config import Settings
from shopsentry.models.live_gate import (
    LiveEvidence,
    current_evidence,
    judge,
    live_evidence,
    threshold_for_recall,
)
from shopsentry.warehouse.db import WarehouseError

T = 0.7
OLD, RECENT = date(2026, 11, 10), date(2026, 11, 28)


def evidence(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    days: list[date] | None = None,
    maturity: dict[date, float | None] | None = None,
) -> LiveEvidence:
    """Rows on ``days`` (default: all on one day of maturity 1)."""
    days = days or [OLD] * len(y)
    return LiveEvidence(
        "1",
        "2",
        np.array(days, dtype="datetime64[D]"),
        np.asarray(y, dtype=bool),
        np.asarray(champion, dtype=np.float64),
        np.asarray(challenger, dtype=np.float64),
        maturity=maturity if maturity is not None else {OLD: 1.0},
    )


def gate(ev: LiveEvidence, **kwargs: Any) -> Any:
    return judge(ev, **{"threshold": T, "min_label_maturity": 0.8, **kwargs})


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
    verdict = gate(evidence(y, champion, challenger), min_labelled_frauds=30)
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
    verdict = gate(evidence(y, champion, challenger), min_labelled_frauds=30)
    assert not verdict.promote
    assert verdict.challenger_precision == pytest.approx(30 / 160)
    assert verdict.reason.startswith("no better live precision")
    # a copy of the champion ties (never promoted), nor is a gain below the margin
    same = gate(evidence(y, champion, champion), min_labelled_frauds=30)
    assert not same.promote and same.challenger_precision == same.champion_precision == 0.5
    better = champion.copy()
    better[60:70] = 0.1  # 20 false positives instead of 30: precision 0.6 vs 0.5
    assert gate(evidence(y, champion, better), min_labelled_frauds=30).promote
    margin = gate(evidence(y, champion, better), min_labelled_frauds=30, min_precision_gain=0.2)
    assert not margin.promote and "gain needed > 0.2" in margin.reason


def test_not_enough_matured_labels_decides_nothing() -> None:
    y, champion = crafted()
    verdict = gate(evidence(y, champion, champion * 0.5), min_labelled_frauds=41)
    assert not verdict.promote and verdict.challenger_precision is None
    assert verdict.reason == (
        "not enough matured labels: 40 labelled frauds among 1,000 purchases of matured"
        " days (need 41); matured window 2026-11-10..2026-11-10 (1 of 1 days with label"
        " maturity >= 0.8): 1,000 of the 1,000 purchases both models scored (100%), 40 of"
        " 40 labelled frauds"
    )
    empty = np.zeros(0)
    none = gate(evidence(empty, empty, empty, maturity={}), min_labelled_frauds=1)
    assert not none.promote and none.purchases == 0 and none.scored_purchases == 0


def test_a_champion_that_catches_nothing_leaves_no_recall_to_match() -> None:
    y, _ = crafted()
    low = np.full(1000, 0.1)
    verdict = gate(evidence(y, low, np.linspace(0, 1, 1000)), min_labelled_frauds=10)
    assert not verdict.promote and "catches none of the 40 labelled frauds" in verdict.reason


def test_threshold_for_recall_with_ties_keeps_at_least_that_many() -> None:
    y = np.array([True, True, True, False])
    scores = np.array([0.9, 0.5, 0.5, 0.7])
    assert threshold_for_recall(y, scores, 1) == 0.9
    assert threshold_for_recall(y, scores, 2) == 0.5  # the tie brings the third along
    assert np.count_nonzero(y & (scores >= 0.5)) == 3


def old_and_recent() -> tuple[np.ndarray, np.ndarray, list[date]]:
    """The crafted matured day (1,000 purchases) and a recent day of 500 purchases whose
    frauds are not charged back yet: no label known. The champion flags 50 of them (20
    will turn out fraud, unknown so far)."""
    y, champion = crafted()
    y = np.concatenate([y, np.zeros(500, dtype=bool)])
    recent = np.full(500, 0.1)
    recent[:50] = 0.95
    return y, np.concatenate([champion, recent]), [OLD] * 1000 + [RECENT] * 500


def test_a_challenger_better_only_on_immature_recent_days_is_not_promoted() -> None:
    y, champion, days = old_and_recent()
    challenger = champion.copy()
    challenger[1000:] = 0.1  # the champion's twin on the old day; on the recent day it flags none
    maturity = {OLD: 0.95, RECENT: 0.3}
    verdict = gate(evidence(y, champion, challenger, days, maturity), min_labelled_frauds=30)
    assert not verdict.promote, verdict.reason
    assert verdict.purchases == 1000 and verdict.scored_purchases == 1500
    assert verdict.champion_precision == verdict.challenger_precision == pytest.approx(0.5)
    assert (verdict.window_first, verdict.window_last) == ("2026-11-10", "2026-11-10")
    assert verdict.reason.endswith(
        "matured window 2026-11-10..2026-11-10 (1 of 2 days with label maturity >= 0.8):"
        " 1,000 of the 1,500 purchases both models scored (67%), 40 of 40 labelled frauds"
    )
    # Judged on every day, the recent day's unlabelled alerts would have promoted it.
    everything = gate(
        evidence(y, champion, challenger, days, maturity),
        min_labelled_frauds=30,
        min_label_maturity=0.3,
    )
    assert everything.promote and everything.purchases == 1500


def test_fresh_purchases_with_unknown_labels_no_longer_count_as_legitimate() -> None:
    y, champion, days = old_and_recent()
    challenger = np.full(1500, 0.05)
    challenger[:30] = 0.6
    challenger[40:50] = 0.65  # 10 false positives on the old day: precision 0.75
    verdict = gate(
        evidence(y, champion, challenger, days, {OLD: 0.9, RECENT: 0.5}), min_labelled_frauds=30
    )
    # The champion's 50 recent alerts are not counted as false positives: 30 of 60 → 0.5,
    # not 30 of 110.
    assert verdict.champion_precision == pytest.approx(0.5)
    assert verdict.challenger_precision == pytest.approx(0.75)
    assert verdict.promote


def test_a_day_without_a_maturity_estimate_is_left_out() -> None:
    y, champion, days = old_and_recent()
    verdict = gate(
        evidence(y, champion, champion, days, {OLD: None, RECENT: None}), min_labelled_frauds=1
    )
    assert not verdict.promote and verdict.purchases == 0 and verdict.window_first is None
    assert verdict.reason == (
        "not enough matured labels: 0 labelled frauds among 0 purchases of matured days"
        " (need 1); no matured window (0 of 2 days with label maturity >= 0.8): 0 of the"
        " 1,500 purchases both models scored (0%), 0 of 40 labelled frauds"
    )


def test_labelled_frauds_of_recent_days_are_not_enough() -> None:
    """Frauds known early on immature days do not make up for the matured days' count."""
    y, champion, days = old_and_recent()
    y[1000:1020] = True  # 20 quick chargebacks on the recent day
    verdict = gate(
        evidence(y, champion, champion, days, {OLD: 0.9, RECENT: 0.2}), min_labelled_frauds=50
    )
    assert not verdict.promote and verdict.labelled_frauds == 40
    assert verdict.scored_labelled_frauds == 60
    assert verdict.reason.startswith("not enough matured labels: 40 labelled frauds among 1,000")
    assert "40 of 60 labelled frauds" in verdict.reason


def staging_tables(con: Any) -> None:
    """The columns of staging.stg_decisions and stg_fraud_labels the live gate reads, and
    of monitoring.model_comparison_daily for the days' maturity (empty, replacing any)."""
    con.execute("create schema if not exists staging")
    con.execute(
        "create or replace table staging.stg_decisions (event_id varchar,"
        " model_version varchar, probability double, challenger_version varchar,"
        " challenger_probability double, decided_at timestamp, occurred_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_fraud_labels (event_id varchar,"
        " is_fraud boolean, known_at timestamp)"
    )
    con.execute("create schema if not exists monitoring")
    con.execute(
        "create or replace table monitoring.model_comparison_daily (day date,"
        " champion_version varchar, challenger_version varchar, label_maturity double,"
        " as_of timestamp)"
    )


def decisions(con: Any, rows: list[tuple[Any, ...]]) -> None:
    """Rows (event_id, champion, probability, challenger, its probability, decided_at);
    each occurred a second before it was decided."""
    con.executemany(
        "insert into staging.stg_decisions values (?, ?, ?, ?, ?, ?, ?)",
        [(*r, r[5] - timedelta(seconds=1)) for r in rows],
    )


def maturity(con: Any, days: dict[date, float | None], as_of: datetime) -> None:
    """The days' maturity for champion 1 and challenger 2, as if built as of ``as_of``."""
    at = as_of.astimezone(UTC).replace(tzinfo=None)
    con.executemany(
        "insert into monitoring.model_comparison_daily values (?, '1', '2', ?, ?)",
        [(d, m, at) for d, m in days.items()],
    )


AS_OF = datetime(2026, 11, 30, tzinfo=UTC)


def test_the_evidence_is_what_both_scored_with_labels_known_by_then(tmp_path) -> None:
    from shopsentry.warehouse.db import connect

    settings = Settings(data_dir=tmp_path)
    at = datetime(2026, 11, 20, 12)
    with connect(settings.warehouse_path) as con:
        staging_tables(con)
        decisions(
            con,
            [
                ("e1", "1", 0.9, "2", 0.8, at),  # fraud, known in time
                ("e2", "1", 0.2, "2", 0.3, at),  # fraud, known only after as_of: legitimate so far
                ("e3", "1", 0.1, "2", 0.1, at),  # charged back, then a review said legitimate
                ("e4", "1", 0.5, None, None, at),  # no challenger: left out
                ("e5", "9", 0.5, "2", 0.5, at),  # another champion: left out
                ("e6", "1", 0.4, "3", 0.4, at),  # another challenger: left out
                ("e7", "1", 0.6, "2", 0.6, at + timedelta(days=30)),  # made after as_of
            ],
        )
        labels = [
            ("e1", True, at + timedelta(days=2)),
            ("e2", True, at + timedelta(days=20)),
            ("e3", True, at + timedelta(days=1)),
            ("e3", False, at + timedelta(days=3)),
        ]
        con.executemany("insert into staging.stg_fraud_labels values (?, ?, ?)", labels)
        maturity(con, {date(2026, 11, 20): 0.9, date(2026, 11, 29): None}, AS_OF)
    evidence = live_evidence(settings.warehouse_path, "1", "2", AS_OF)
    got = sorted(
        zip(evidence.champion, evidence.challenger, evidence.is_fraud, strict=True),
        reverse=True,
    )
    assert got == [(0.9, 0.8, True), (0.2, 0.3, False), (0.1, 0.1, False)]
    assert set(evidence.day.tolist()) == {date(2026, 11, 20)}
    assert evidence.maturity == {date(2026, 11, 20): 0.9, date(2026, 11, 29): None}
    assert evidence.maturity_as_of == datetime(2026, 11, 30)


def test_the_maturity_must_be_as_of_the_gate(tmp_path) -> None:
    """Maturity built at another time is rebuilt through ``refresh`` (and read again);
    without it, or when it did not help, the gate has no evidence to judge."""
    from shopsentry.warehouse.db import connect

    settings = Settings(data_dir=tmp_path)
    day = date(2026, 11, 20)
    with connect(settings.warehouse_path) as con:
        staging_tables(con)
        at = datetime(2026, 11, 20, 12)
        decisions(con, [("e1", "1", 0.9, "2", 0.8, at), ("e2", "1", 0.9, "3", 0.8, at)])
        maturity(con, {day: 0.5}, AS_OF - timedelta(days=2))
    with pytest.raises(WarehouseError, match="as of 2026-11-28 00:00:00, not as of the gate's"):
        current_evidence(settings.warehouse_path, "1", "2", AS_OF)
    refreshed: list[datetime] = []

    def rebuild(at: datetime) -> None:
        refreshed.append(at)
        with connect(settings.warehouse_path) as con:
            con.execute("delete from monitoring.model_comparison_daily")
            maturity(con, {day: 0.95}, at)

    got = current_evidence(settings.warehouse_path, "1", "2", AS_OF, refresh=rebuild)
    assert refreshed == [AS_OF] and got.maturity == {day: 0.95}
    with pytest.raises(WarehouseError, match="not built for this pair"):
        # no rows for 1-3
        current_evidence(settings.warehouse_path, "1", "3", AS_OF, refresh=lambda at: None)


def test_no_staging_yet_is_a_warehouse_error(tmp_path) -> None:
    from shopsentry.warehouse.db import WarehouseError, WarehouseMissing, connect

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(WarehouseMissing):
        live_evidence(settings.warehouse_path, "1", "2", datetime.now(UTC))
    with connect(settings.warehouse_path) as con:
        con.execute("select 1")
    with pytest.raises(WarehouseError, match="no live challenger evidence"):
        live_evidence(settings.warehouse_path, "1", "2", datetime.now(UTC))
