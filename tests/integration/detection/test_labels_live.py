"""Labels reach the entity state while the detector runs: `detect` starts the label
consumer beside its workers, and a chargeback published mid-stream changes the entity
fraud-share feature of the purchases decided after its known_at — and of no purchase
decided before it, even one that arrives after the label was applied."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings
from shopsentry.events.codec import decode, encode
from shopsentry.events.schema import Label, Purchase
from shopsentry.features.entity_labels import label_group
from shopsentry.rules.control import publish, rule_change
from shopsentry.rules.model import Rule

from .conftest import Champion, produce, promote, simulator, wait_for
from .test_detector import decisions_of, lag_is_zero, run_supervisor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A shadow rule is the detector's own record of a feature's value at decision time.
KNOWN_FRAUD = Rule(
    name="card_known_fraud",
    expression="has(features.card_fraud_share_30d) && features.card_fraud_share_30d > 0.0",
    action="review",
)


def test_a_label_published_while_detect_runs_changes_only_later_decisions(
    backend: Settings, champion: Champion
) -> None:
    settings = backend
    promote(settings, champion, "1")
    template = next(
        p
        for r in simulator(days=1).records()
        if r.event_type == "purchase"
        and isinstance(p := decode(r.raw), Purchase)
        and p.card_fingerprint is not None
    )
    t0 = template.occurred_at

    def purchase(n: int, hours: float) -> Purchase:
        return template.model_copy(
            update={
                "event_id": f"ev-live-{n}",
                "order_id": f"order-live-{n}",
                "user_id": f"user-live-{n}",
                "card_fingerprint": "card-shared-live",
                "occurred_at": t0 + timedelta(hours=hours),
            }
        )

    first, early, before, after = purchase(1, 0), purchase(2, 1), purchase(3, 1.5), purchase(4, 3)
    chargeback = Label(
        event_id=first.event_id,
        source=first.source,
        user_id=first.user_id,
        occurred_at=first.occurred_at,
        order_id=first.order_id,
        is_fraud=True,
        known_at=t0 + timedelta(hours=2),
    )
    log = open_log(BusConfig.from_settings(settings))
    producer = log.producer()
    publish(producer, settings.topics.rules.name, [rule_change(KNOWN_FRAUD, "test")])
    producer.close()
    topic = settings.topics.purchase_events.name

    def decide(p: Purchase) -> None:
        produce(log, [(topic, p.user_id.encode(), encode(p))])
        wait_for(
            lambda: p.event_id in {d.event_id for d in decisions_of(settings)},
            240,
            f"a decision for {p.event_id}",
        )

    supervisor = run_supervisor(settings, 1)
    try:
        decide(first)
        decide(early)
        produce(log, [(settings.topics.labels.name, None, encode(chargeback))])
        group = label_group(settings.detector.group_id)
        wait_for(lambda: lag_is_zero(settings, 1, group), 240, "the label consumer to apply it")
        decide(before)  # arrives after the label, but is decided before its known_at
        decide(after)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=60)
        log.close()
    fired = {d.event_id: KNOWN_FRAUD.name in d.shadow_rules_fired for d in decisions_of(settings)}
    assert fired == {
        first.event_id: False,
        early.event_id: False,
        before.event_id: False,
        after.event_id: True,
    }
