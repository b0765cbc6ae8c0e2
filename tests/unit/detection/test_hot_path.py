"""One micro-batch: validation, dead letters, per-user order, one scorer call, idempotence."""

from __future__ import annotations

import json

import orjson
import pytest

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.config import DetectorSettings, TopicsSettings
from shopsentry.detection.hot_path import HotPath
from shopsentry.detection.worker import hot_path_config
from shopsentry.events.codec import encode
from shopsentry.events.schema import DECISION
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import BEHAVIOR_NS, PURCHASE_NS

from .fakes import FakeOps, FakeScorer, login, purchase

# The hot path as the default settings configure it.
DEFAULTS = hot_path_config(TopicsSettings(), DetectorSettings())

PT, BT = "purchase-events", "user-behavior"


def rec(
    topic: str, offset: int, value: bytes, key: bytes | None = b"u1", partition: int = 0
) -> Record:
    return Record(topic, partition, offset, 1_000 + offset, key, value)


@pytest.fixture
def pipe() -> HotPath:
    return HotPath(DEFAULTS, FakeOps())


def decisions(out) -> list:  # type: ignore[no-untyped-def]
    return [DECISION.validate_json(o.value) for o in out.outputs if o.topic == "decisions"]


def test_features_follow_each_users_offset_order_and_one_scorer_call(
    pipe: HotPath, store: LmdbStateStore
) -> None:
    records = [
        rec(BT, 0, encode(login(0, "u1"))),
        rec(PT, 0, encode(purchase(1, "u1"))),
        rec(PT, 1, encode(purchase(2, "u2")), key=b"u2"),
        rec(PT, 2, encode(purchase(3, "u1"))),
        rec(PT, 3, encode(purchase(4, "u1", amount=900))),
    ]
    scorer = FakeScorer()
    out = pipe.process(records, {}, scorer, store)
    assert scorer.calls == 1
    ds = decisions(out)
    assert [d.event_id for d in ds] == ["p-u1-1", "p-u2-2", "p-u1-3", "p-u1-4"]
    assert out.purchases == 4 and out.bands == {"approve": 3, "review": 1}
    states = {u: json.loads(v) for u, v in out.state_changes[PURCHASE_NS].items()}
    assert states["u1"] == {"purchases": 3, "events": ["p-u1-1", "p-u1-3", "p-u1-4"]}
    assert states["u2"]["purchases"] == 1
    assert json.loads(out.state_changes[BEHAVIOR_NS]["u1"]) == {"logins": 1}
    assert out.commit == {TopicPartition(PT, 0): 4, TopicPartition(BT, 0): 1}
    assert out.applied == {TopicPartition(PT, 0): 3, TopicPartition(BT, 0): 0}
    assert sorted(out.timestamps_ms) == [1000, 1001, 1002, 1003]


def test_state_from_the_store_carries_over_between_batches(
    pipe: HotPath, store: LmdbStateStore
) -> None:
    out = pipe.process([rec(PT, 0, encode(purchase(1)))], {}, FakeScorer(), store)
    store.save(out.state_changes, out.applied)
    out2 = pipe.process([rec(PT, 1, encode(purchase(2)))], {}, FakeScorer(), store)
    assert json.loads(out2.state_changes[PURCHASE_NS]["u1"])["purchases"] == 2


def test_redelivered_offsets_are_skipped_but_committed(
    pipe: HotPath, store: LmdbStateStore
) -> None:
    tp = TopicPartition(PT, 0)
    records = [rec(PT, i, encode(purchase(i))) for i in range(4)]
    out = pipe.process(records, {tp: 1}, FakeScorer(), store)
    assert [d.event_id for d in decisions(out)] == ["p-u1-2", "p-u1-3"]
    assert out.skipped_by_topic == {PT: 2}
    assert out.commit == {tp: 4}
    assert json.loads(out.state_changes[PURCHASE_NS]["u1"])["purchases"] == 2


@pytest.mark.parametrize(
    ("value", "key", "stage", "reason_part"),
    [
        (b"{not json", b"u1", "decode", "json"),
        (
            encode(purchase(1)).replace(b'"item_count":1', b'"item_count":"many"'),
            b"u1",
            "decode",
            "item_count",
        ),
        (
            encode(purchase(1)).replace(b'"amount":20.0', b'"amount":-5.0'),
            b"u1",
            "decode",
            "amount",
        ),
        (
            encode(purchase(1)).replace(b'"country":"US"', b'"country":"' + b"X" * 70_000 + b'"'),
            b"u1",
            "decode",
            "exceeds",
        ),
        (encode(login(1)), b"u1", "route", "not a purchase"),
        (encode(purchase(1)), b"someone-else", "route", "key"),
    ],
)
def test_bad_input_is_dead_lettered_and_the_rest_flows(
    pipe: HotPath,
    store: LmdbStateStore,
    value: bytes,
    key: bytes,
    stage: str,
    reason_part: str,
) -> None:
    records = [rec(PT, 0, value, key=key), rec(PT, 1, encode(purchase(2)))]
    out = pipe.process(records, {}, FakeScorer(), store)
    dead = [o for o in out.outputs if o.topic == "dead-letter"]
    assert len(dead) == 1
    headers = dict(dead[0].headers or ())
    assert headers["dlq.stage"] == stage.encode()
    assert reason_part.lower() in headers["dlq.reason"].decode().lower()
    assert headers["dlq.offset"] == b"0" and dead[0].value == value and dead[0].key == key
    assert out.dead_letters == {stage: 1}
    assert [d.event_id for d in decisions(out)] == ["p-u1-2"]
    assert out.commit == {TopicPartition(PT, 0): 2}


def test_purchase_on_the_behaviour_topic_is_dead_lettered(
    pipe: HotPath, store: LmdbStateStore
) -> None:
    out = pipe.process([rec(BT, 0, encode(purchase(1)))], {}, FakeScorer(), store)
    assert out.dead_letters == {"route": 1} and out.purchases == 0


def test_a_feature_error_dead_letters_that_event_only(store: LmdbStateStore) -> None:
    class Exploding(FakeOps):
        def vector(self, purchase, pstate, bstate):  # type: ignore[no-untyped-def]
            if purchase.amount == 13.0:
                raise ValueError("unlucky")
            return super().vector(purchase, pstate, bstate)

    pipe = HotPath(DEFAULTS, Exploding())
    records = [rec(PT, 0, encode(purchase(1, amount=13.0))), rec(PT, 1, encode(purchase(2)))]
    out = pipe.process(records, {}, FakeScorer(), store)
    assert out.dead_letters == {"features": 1}
    assert json.loads(out.state_changes[PURCHASE_NS]["u1"])["purchases"] == 1


def test_decision_latency_and_version_are_recorded(pipe: HotPath, store: LmdbStateStore) -> None:
    out = pipe.process([rec(PT, 0, encode(purchase(1)))], {}, FakeScorer(version="42"), store)
    raw = orjson.loads(out.outputs[0].value)
    assert raw["model_version"] == "42" and out.model_version == "42"
    assert {"parse", "features", "score", "queue"} <= set(raw["latency_ms"])


def test_rules_and_lists_decide_in_precedence_and_every_decision_says_why(
    pipe: HotPath, store: LmdbStateStore
) -> None:
    """FakeScorer: p = amount / 1000; threshold 0.7 (review), decline 0.95."""
    from shopsentry.events.schema import ALERT
    from shopsentry.rules.engine import CompiledRuleSet
    from shopsentry.rules.model import ListEntry, Rule, RuleSet

    rule_set = RuleSet(
        version=7,
        rules=(
            Rule(name="big_gift", expression="purchase.amount > 500.0", action="block",
                 mode="active"),
            Rule(name="repeat", expression="features.purchases_before >= 1.0", action="review",
                 mode="active"),
            Rule(name="draft", expression="purchase.amount / (features.logins_before) > 1.0",
                 action="block"),  # shadow, and errs (division by zero) without logins
        ),
        entries=(ListEntry(list="allow", entity="user", value="vip"),),
    )  # fmt: skip
    compiled = CompiledRuleSet(rule_set, FakeOps.names)
    records = [
        rec(PT, 0, encode(purchase(1, "u1", amount=600))),  # block rule, model: approve
        rec(PT, 1, encode(purchase(2, "u1", amount=20))),  # review rule (second purchase)
        rec(PT, 2, encode(purchase(3, "vip", amount=990)), key=b"vip"),  # allow list wins
        rec(PT, 3, encode(purchase(4, "u3", amount=20)), key=b"u3"),  # nothing applies
    ]
    out = pipe.process(records, {}, FakeScorer(), store, compiled)
    ds = {d.event_id: d for d in decisions(out)}
    got = {k: (d.band, d.model_band, d.rules_fired, d.list_hits) for k, d in ds.items()}
    assert got == {
        "p-u1-1": ("decline", "approve", ("big_gift",), ()),
        "p-u1-2": ("review", "approve", ("repeat",), ()),
        "p-vip-3": ("approve", "decline", ("big_gift",), ("allow:user",)),
        "p-u3-4": ("approve", "approve", (), ()),
    }
    assert all(d.rule_set_version == 7 for d in ds.values())
    assert out.rule_errors == {"draft": 4} and out.rule_hits[("draft", "shadow")] == 0
    alerts = [ALERT.validate_json(o.value) for o in out.outputs if o.topic == "fraud-alerts"]
    assert {(a.event_id, a.rules_fired) for a in alerts} == {
        ("p-u1-1", ("big_gift",)), ("p-u1-2", ("repeat",))
    }  # fmt: skip
