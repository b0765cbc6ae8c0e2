"""The challenger on the hot path: shadow never changes a decision, the split is a stable
hash of the user, both models score the batch's matrix once each, and the metrics count
what was scored, served and agreed on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from shopsentry.bus.base import Record
from shopsentry.config import ChallengerSettings, DetectorSettings, Settings
from shopsentry.detection.challenger import (
    ChallengerConfig,
    in_challenger_share,
    score_challenger,
    user_position,
)
from shopsentry.detection.hot_path import BatchOutcome, HotPath
from shopsentry.detection.metrics import WorkerMetrics
from shopsentry.detection.observers import MetricsObserver
from shopsentry.detection.worker import hot_path_config
from shopsentry.events.codec import encode
from shopsentry.events.schema import ALERT, DECISION, Decision
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.stream.base import BatchReport, BatchResult

from .fakes import FakeOps, FakeScorer, purchase

PT = "purchase-events"
USERS = [f"user-{i}" for i in range(40)]
AMOUNTS = [50.0, 400.0, 800.0, 990.0]  # champion p = amount / 1000


@dataclass
class Bolder(FakeScorer):
    """A challenger that flags more: p = amount / 500 (clipped)."""

    version: str = "2"

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.clip(X[:, 0] / 500.0, 0, 1).astype(np.float32)


def settings(mode: str = "shadow", share: float = 0.5) -> Settings:
    return Settings(
        data_dir="unused",
        detector=DetectorSettings(
            challenger=ChallengerSettings(mode=mode, share=share)  # type: ignore[arg-type]
        ),
    )


def batch() -> list[Record]:
    out = []
    for i, user in enumerate(USERS):
        p = purchase(i, user, amount=AMOUNTS[i % len(AMOUNTS)])
        out.append(Record(PT, 0, i, 1_000 + i, user.encode(), encode(p)))
    return out


def decisions(out: BatchOutcome) -> dict[str, Decision]:
    ds = [DECISION.validate_json(o.value) for o in out.outputs if o.topic == "decisions"]
    return {d.event_id: d for d in ds}


def run(store: LmdbStateStore, s: Settings, challenger: FakeScorer | None) -> BatchOutcome:
    return HotPath(hot_path_config(s.topics, s.detector), FakeOps()).process(
        batch(), {}, FakeScorer(), store, None, challenger
    )


def test_the_split_is_a_stable_hash_of_the_user() -> None:
    salt = "s1"
    sides = [in_challenger_share(u, 0.5, salt) for u in (f"u{i}" for i in range(4000))]
    assert sides == [in_challenger_share(f"u{i}", 0.5, salt) for i in range(4000)]
    assert 0.45 < sum(sides) / len(sides) < 0.55
    assert not any(in_challenger_share(f"u{i}", 0.0, salt) for i in range(200))
    assert all(in_challenger_share(f"u{i}", 1.0, salt) for i in range(200))
    # a bigger share only adds users: nobody changes sides the other way
    assert all(
        in_challenger_share(f"u{i}", 0.6, salt)
        for i in range(1000)
        if in_challenger_share(f"u{i}", 0.3, salt)
    )
    other = [in_challenger_share(f"u{i}", 0.5, "s2") for i in range(4000)]
    assert other != sides  # the salt re-draws the split
    assert 0.0 <= user_position("anyone", salt) < 1.0


def test_no_challenger_or_mode_off_scores_nothing_twice() -> None:
    X = np.zeros((2, 3), np.float32)
    decided = [(None, purchase(1)), (None, purchase(2))]
    assert score_challenger(ChallengerConfig("shadow", 0.5), None, X, decided) is None
    model = Bolder()
    assert score_challenger(ChallengerConfig("off", 0.5), model, X, decided) is None
    assert model.calls == 0


def test_shadow_records_the_challenger_and_changes_no_decision(store: LmdbStateStore) -> None:
    alone = decisions(run(store, settings("off"), None))
    challenger = Bolder()
    out = run(store, settings("shadow"), challenger)
    shadow = decisions(out)
    assert challenger.calls == 1  # the whole matrix in one call
    assert set(shadow) == set(alone)
    for event_id, d in shadow.items():
        before = alone[event_id]
        assert (d.band, d.model_band, d.probability, d.model_version) == (
            before.band, before.model_band, before.probability, before.model_version,
        )  # fmt: skip
        assert d.top_features == before.top_features
        assert d.served_by == "champion" and d.challenger_version == "2"
        assert d.challenger_probability == pytest.approx(min(1.0, d.amount / 500), abs=1e-6)
        expected = (
            "decline"
            if d.amount / 500 >= 0.95
            else "review"
            if d.amount / 500 >= 0.7
            else "approve"
        )
        assert d.challenger_band == expected
    assert before.challenger_version is None and before.served_by == "champion"
    # agreement counts: each (champion band, challenger band) pair once per purchase
    assert sum(out.challenger_bands.values()) == len(shadow)
    assert out.challenger_bands[("review", "decline")] == 10  # amount 800: 0.8 vs 1.0
    assert out.challenger_served == 0 and out.challenger_version == "2"


def test_split_lets_the_challenger_decide_for_exactly_its_users(store: LmdbStateStore) -> None:
    s = settings("split", share=0.5)
    out = run(store, s, Bolder())
    ds = decisions(out)
    salt = s.detector.challenger.salt
    mine = {u for u in USERS if in_challenger_share(u, 0.5, salt)}
    assert 0 < len(mine) < len(USERS)
    for d in ds.values():
        if d.user_id in mine:
            assert d.served_by == "challenger"
            assert d.band == d.model_band == d.challenger_band
        else:
            assert d.served_by == "champion"
            assert d.model_band == d.band
            assert d.band == ("decline" if d.probability >= 0.95 else
                              "review" if d.probability >= 0.7 else "approve")  # fmt: skip
        assert d.model_version == "1" and d.challenger_version == "2"
    assert out.challenger_served == len([d for d in ds.values() if d.user_id in mine])
    # an alert the challenger raised is explained and graded by the challenger's score
    alerts = [ALERT.validate_json(o.value) for o in out.outputs if o.topic == "fraud-alerts"]
    served = [a for a in alerts if a.served_by == "challenger"]
    assert served and all(a.challenger_probability is not None for a in served)
    assert any(a.probability < 0.7 for a in served)  # the champion alone would not alert


def test_the_rules_see_the_serving_models_probability(store: LmdbStateStore) -> None:
    from shopsentry.rules.engine import CompiledRuleSet
    from shopsentry.rules.model import Rule, RuleSet

    rule = Rule(name="risky", expression="score >= 0.7", action="review", mode="active")
    compiled = CompiledRuleSet(RuleSet(version=1, rules=(rule,)), FakeOps.names)
    s = settings("split", share=1.0)
    out = HotPath(hot_path_config(s.topics, s.detector), FakeOps()).process(
        batch(), {}, FakeScorer(), store, compiled, Bolder()
    )
    for d in decisions(out).values():
        assert ("risky" in d.rules_fired) == (d.challenger_probability >= 0.7)  # type: ignore[operator]


def test_metrics_count_scored_served_and_band_pairs(store: LmdbStateStore) -> None:
    out = run(store, settings("split", share=1.0), Bolder())
    metrics = WorkerMetrics()
    MetricsObserver(metrics).on_batch(
        BatchReport(
            records=len(USERS),
            applied=len(USERS),
            skipped_by_topic={},
            result=BatchResult(outputs=[], changes={}, detail=out),
            durable_ms=0,
        )
    )
    assert metrics.value("shopsentry_challenger_scored_total") == len(USERS)
    assert metrics.value("shopsentry_challenger_served_total") == len(USERS)
    pair = {"champion_band": "approve", "challenger_band": "review"}  # amount 400: 0.4 vs 0.8
    assert metrics.value("shopsentry_challenger_band_pairs_total", pair) == 10
    metrics.set_challenger_version("2")
    assert metrics.value("shopsentry_challenger_version_info", {"version": "2"}) == 1
    metrics.set_challenger_version(None)
    assert metrics.value("shopsentry_challenger_version_info", {"version": "2"}) == 0


def test_settings_default_to_shadow_and_check_the_share() -> None:
    assert Settings(data_dir="x").detector.challenger.mode == "shadow"
    with pytest.raises(ValueError, match="share"):
        ChallengerSettings(share=1.5)
