from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopsentry.events.schema import Purchase
from shopsentry.rules.engine import CompiledRuleSet, PurchaseColumns
from shopsentry.rules.lists import read_csv
from shopsentry.rules.model import ListEntry, Rule, RuleSet

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
FEATURES = ("amount", "new_device", "amount_ratio")


def purchase(
    n: int, *, amount: float = 20.0, card: str | None = None, user: str = "u1"
) -> Purchase:
    return Purchase(
        event_id=f"p{n}",
        source="web",
        user_id=user,
        occurred_at=NOW,
        order_id=f"o{n}",
        amount=amount,
        item_count=1,
        payment_method="card",
        country="US",
        billing_country="US",
        card_fingerprint=card,
    )


def evaluate(rule_set: RuleSet, purchases, features, scores, at=NOW):
    compiled = CompiledRuleSet(rule_set, FEATURES)
    X = np.asarray(features, dtype=np.float32)
    cols = PurchaseColumns(
        purchases, X, {n: i for i, n in enumerate(FEATURES)}, np.asarray(scores), compiled.lists
    )
    return compiled.evaluate(cols, at.timestamp())


def bands(verdicts, model_bands):
    return [verdicts.final_band(i, b) for i, b in enumerate(model_bands)]


def test_precedence_allow_list_block_list_block_rule_model_review_rule():
    rules = RuleSet(
        rules=(
            Rule(name="big", expression="purchase.amount > 500.0", action="block", mode="active"),
            Rule(
                name="new_dev",
                expression="features.new_device == 1.0",
                action="review",
                mode="active",
            ),
        ),
        entries=(
            ListEntry(list="allow", entity="user", value="vip"),
            ListEntry(list="block", entity="card", value="stolen"),
        ),
    )
    purchases = [
        purchase(0, amount=900, user="vip", card="stolen"),  # allow list beats everything
        purchase(1, card="stolen"),  # block list
        purchase(2, amount=900),  # block rule
        purchase(3),  # the model declines
        purchase(4),  # review rule upgrades an approval
        purchase(5),  # review rule never downgrades a decline
        purchase(6),  # nothing applies
    ]
    features = [[p.amount, 1.0 if i in (4, 5) else 0.0, 1.0] for i, p in enumerate(purchases)]
    model = ["approve", "approve", "approve", "decline", "approve", "decline", "approve"]
    verdicts = evaluate(rules, purchases, features, [0.1] * 7)
    assert bands(verdicts, model) == [
        "approve",
        "decline",
        "decline",
        "decline",
        "review",
        "decline",
        "approve",
    ]
    assert set(verdicts.list_hits[0]) == {"block:card", "allow:user"}
    assert verdicts.rules_fired[2] == ("big",)
    assert verdicts.rules_fired[4] == ("new_dev",)


def test_shadow_rules_are_counted_and_never_act():
    rules = RuleSet(
        rules=(Rule(name="draft", expression="purchase.amount > 100.0", action="block"),)
    )
    verdicts = evaluate(
        rules, [purchase(0, amount=500), purchase(1)], [[500, 0, 1], [20, 0, 1]], [0, 0]
    )
    assert bands(verdicts, ["approve", "approve"]) == ["approve", "approve"]
    assert verdicts.shadow_fired[0] == ("draft",) and verdicts.rules_fired[0] == ()
    assert verdicts.hits[("draft", "shadow")] == 1


def test_a_rule_that_errs_on_one_purchase_is_counted_and_the_rest_still_decide():
    rules = RuleSet(
        rules=(
            Rule(
                name="ratio",
                expression="purchase.amount / features.amount_ratio > 10.0",
                action="block",
                mode="active",
            ),
            Rule(
                name="card",
                expression="purchase.card_fingerprint == 'bad'",
                action="block",
                mode="active",
            ),
        )
    )
    purchases = [purchase(0, amount=50, card="bad"), purchase(1, amount=500, card="ok")]
    verdicts = evaluate(rules, purchases, [[50, 0, 0.0], [500, 0, 2.0]], [0, 0])
    assert verdicts.errors == {"ratio": 1}  # division by zero on the first purchase
    assert bands(verdicts, ["approve", "approve"]) == ["decline", "decline"]
    assert verdicts.rules_fired == [("card",), ("ratio",)]


def test_a_rule_that_no_longer_compiles_is_left_out_and_the_others_apply():
    rules = RuleSet(
        rules=(
            Rule(name="gone", expression="features.dropped > 1.0", action="block", mode="active"),
            Rule(name="kept", expression="score > 0.5", action="review", mode="active"),
        )
    )
    compiled = CompiledRuleSet(rules, FEATURES)
    assert [r.rule.name for r in compiled.rules] == ["kept"]


def test_list_entries_stop_matching_when_they_expire():
    rules = RuleSet(
        entries=(
            ListEntry(list="block", entity="card", value="c", expires_at=NOW + timedelta(hours=1)),
        )
    )
    compiled = CompiledRuleSet(rules, FEATURES)
    cols = lambda: PurchaseColumns(  # noqa: E731
        [purchase(0, card="c")], np.zeros((1, 3), np.float32), {}, np.zeros(1), compiled.lists
    )
    assert compiled.evaluate(cols(), NOW.timestamp()).overrides == ["block"]
    later = (NOW + timedelta(hours=2)).timestamp()
    assert compiled.evaluate(cols(), later).overrides == [None]


def test_csv_import_accounts_for_every_row():
    text = (
        "list,entity,value,reason,expires_at\n"
        "block,card,c1,chargeback,2027-01-01T00:00:00Z\n"
        "block,planet,x,,\n"  # unknown entity
        "allow,user,u9,,not-a-date\n"
        "allow,ip,10.0.0.1,office,\n"
    )
    result = read_csv(text, added_by="ana")
    assert [e.value for e in result.entries] == ["c1", "10.0.0.1"]
    assert [r.row for r in result.rejected] == [3, 4]
    assert "entity" in result.rejected[0].reason and "expires_at" in result.rejected[1].reason
    assert result.entries[0].added_by == "ana"


def test_csv_without_the_needed_columns_is_refused_in_one_line():
    with pytest.raises(ValueError, match="lacks list, value"):
        read_csv("entity,note\ncard,x\n")


def test_versions_increase_with_every_change():
    rs = RuleSet()
    rs = rs.with_rule(Rule(name="a", expression="score > 0.9", action="block"))
    rs = rs.with_entries([ListEntry(list="block", entity="ip", value="1.2.3.4")])
    rs = rs.without_rule("a")
    assert rs.version == 3 and rs.rules == () and len(rs.entries) == 1
