"""The hot path and the backtest agree row by row on which purchases a rule set hits.

One simulated day is replayed through the real detector (a worker process: features
computed live from the running state, the champion's score, the rule engine over each
micro-batch), then loaded from the log into the warehouse and built into its
point-in-time history, over which the backtest evaluates the same rules. For every rule
and every purchase, "fired on the hot path" (the decision's ``rules_fired`` or
``shadow_rules_fired``) equals "fires in the backtest". The rules read features, the
score, purchase strings and numbers, optional values and lists; one errs where a
feature is missing (it must not fire there on either side).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from shopsentry.bus import BusConfig, open_log, topic_specs
from shopsentry.bus.base import EventLog
from shopsentry.config import Settings
from shopsentry.rules.control import entry_change, publish, rule_change
from shopsentry.rules.defaults import DEFAULT_RULES
from shopsentry.rules.model import ListEntry, Rule

from .conftest import Champion, produce, promote, simulator, wait_for
from .test_detector import decisions_of, lag_is_zero, records_of, run_supervisor

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHUNK = 400  # records written at once: under one micro-batch (batch_max_records 500)

RULES = (
    *DEFAULT_RULES,  # the model card's baseline: features, guarded with has()
    Rule(name="score_high", expression="score > 0.5", action="review"),
    Rule(
        name="foreign_card",
        expression="purchase.country != purchase.billing_country && purchase.amount > 50.0",
        action="review",
    ),
    Rule(
        name="gift_or_wallet",
        expression="purchase.payment_method == 'gift_card' || purchase.payment_method"
        ".startsWith('apple') && purchase.item_count >= 2",
        action="review",
    ),
    Rule(  # no has(): errs where the user has no average yet
        name="ratio_unguarded", expression="features.amount_ratio > 3.0", action="review"
    ),
    Rule(
        name="shipping_elsewhere",
        expression="purchase.shipping_country != null"
        " && purchase.shipping_country != purchase.country",
        action="review",
    ),
    Rule(
        name="listed_card_or_busy",
        expression="purchase.card_fingerprint in lists.block.card"
        " || has(features.purchases_1h) && features.purchases_1h >= 2.0 && score > 0.2",
        action="block",
    ),
)


@pytest.mark.parametrize("chunk", [CHUNK, None], ids=["streamed", "one-backlog"])
def test_the_hot_path_and_the_backtest_fire_the_same_rules_on_the_same_purchases(
    tmp_path: Path, champion: Champion, chunk: int | None
) -> None:
    from shopsentry.pipelines.hourly_etl import extract_load, transform
    from shopsentry.pipelines.weekly_model_retrain import build_training_set
    from shopsentry.rules.backtest import history_columns, load_history
    from shopsentry.rules.engine import vocabulary
    from shopsentry.rules.language import compile_rule
    from shopsentry.warehouse.db import connect

    settings = Settings(
        data_dir=tmp_path / "data",
        log_fsync="never",
        detector={"group_id": f"fraud-detector-{uuid.uuid4().hex[:8]}"},
    )
    promote(settings, champion, "1")
    rows = list(records_of(simulator(days=1), settings))
    purchases = {r[6] for r in rows if r[4] == "purchase"}
    cards = sorted({_field(r[2], "card_fingerprint") for r in rows if r[4] == "purchase"})
    entries = [ListEntry(list="block", entity="card", value=c) for c in cards[::7] if c]
    log = open_log(BusConfig.from_settings(settings))
    try:
        log.create_topics(topic_specs(settings.topics))
        producer = log.producer()
        # All rules in shadow: each is evaluated and named on every decision, and the
        # bands stay the model's (the warehouse's score is the decision's).
        changes = [rule_change(r.model_copy(update={"mode": "shadow"}), "test") for r in RULES]
        publish(producer, settings.topics.rules.name, changes)
        publish(producer, settings.topics.rules.name, [entry_change(e, "test") for e in entries])
        producer.close()
        supervisor = run_supervisor(settings, 1)
        try:
            stream(log, settings, rows, chunk or len(rows))
            wait_for(
                lambda: len({d.event_id for d in decisions_of(settings)}) >= len(purchases),
                300,
                "a decision for every purchase",
            )
        finally:
            supervisor.stop()
            supervisor.wait(timeout=60)
    finally:
        log.close()
    decisions = {d.event_id: d for d in decisions_of(settings)}
    version = len(RULES) + len(entries)
    assert {d.rule_set_version for d in decisions.values()} == {version}

    extract_load(settings)
    transform(settings)
    build_training_set(settings)
    with connect(settings.warehouse_path, read_only=True) as conn:
        columns = load_history(conn, None, None)
    event_ids = [str(e) for e in columns["event_id"]]
    assert set(event_ids) == set(decisions) == purchases
    cols = history_columns(columns, entries)
    features = [k[2:] for k in columns if k.startswith("f.")]
    hits: dict[str, int] = {}
    for rule in RULES:
        fires, _errors = compile_rule(rule.expression, vocabulary(features)).evaluate(cols)
        backtest = {e for e, hit in zip(event_ids, fires.tolist(), strict=True) if hit}
        hot = {e for e, d in decisions.items() if rule.name in d.shadow_rules_fired}
        disagree = sorted(backtest ^ hot)
        assert not disagree, (
            f"{rule.name}: {len(disagree)} purchases differ (hot path {len(hot)}, backtest"
            f" {len(backtest)}), e.g. {disagree[:5]}"
        )
        hits[rule.name] = len(hot)
    print(f"hits per rule over {len(decisions)} purchases: {hits}")
    # The comparison means something: the score, the list and the erring rule fire on
    # some purchases, most rules do, and no rule fires on every purchase.
    assert all(hits[name] > 0 for name in ("score_high", "listed_card_or_busy", "ratio_unguarded"))
    assert sum(n > 0 for n in hits.values()) >= len(RULES) // 2
    assert all(n < len(decisions) for n in hits.values())


def stream(log: EventLog, settings: Settings, rows: list[Any], chunk: int = CHUNK) -> None:
    """The history in event-time order, a chunk at a time, each taken in by the worker
    (lag zero) before the next is written: as a live stream delivers it, or (one chunk)
    as a backlog after a restart or a restore, where the worker reads one topic far
    ahead of the other across micro-batches and only the runtime's timestamp-synchronised
    input (docs/stream.md) keeps a purchase from missing behaviour before it."""
    for start in range(0, len(rows), chunk):
        produce(log, ((t, k, v) for t, k, v, *_ in rows[start : start + chunk]))
        done = min(start + chunk, len(rows))
        wait_for(
            lambda n=done: lag_is_zero(settings, n),
            120 if chunk < len(rows) else 900,  # a backlog: the whole day
            f"the worker to take in {done} records",
        )


def _field(raw: bytes, name: str) -> str:
    import orjson

    return str(orjson.loads(raw).get(name) or "")
