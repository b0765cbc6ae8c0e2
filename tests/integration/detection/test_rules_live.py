"""Analyst rules applied live: a rule published while the detector runs decides the
purchases that follow, without a restart, and every decision says which rule set it used."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings
from shopsentry.rules.control import entry_change, publish, rule_change
from shopsentry.rules.model import ListEntry, Rule

from .conftest import Champion, free_port, metric, produce, promote, scrape, simulator, wait_for
from .test_detector import _safe, decisions_of, records_of, run_supervisor

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_rule_published_mid_stream_decides_what_follows(
    backend: Settings, champion: Champion
) -> None:
    settings = backend
    promote(settings, champion, "1")
    rows = list(records_of(simulator(days=1), settings))
    half = len(rows) // 2
    port = free_port()
    log = open_log(BusConfig.from_settings(settings))
    produce(log, ((t, k, v) for t, k, v, *_ in rows[:half]))
    supervisor = run_supervisor(settings, 1, metrics_port=port)
    try:

        def processed() -> float:
            text = scrape(port)
            return sum(
                metric(text, f'shopsentry_events_processed_total{{topic="{t}"}}')
                for t in (settings.topics.purchase_events.name, settings.topics.user_behavior.name)
            )

        wait_for(lambda: _safe(processed) >= half, 240, "the first half to be processed")
        vip = next(r[5] for r in rows[half:] if r[4] == "purchase")
        producer = log.producer()
        publish(
            producer,
            settings.topics.rules.name,
            [
                rule_change(Rule(name="card_payments", action="block", mode="active",
                                 expression="purchase.payment_method == 'card'"), "test"),
                rule_change(Rule(name="draft_big", expression="purchase.amount > 100.0",
                                 action="review"), "test"),
                entry_change(ListEntry(list="allow", entity="user", value=vip), "test"),
            ],
        )  # fmt: skip
        producer.close()
        published = time.monotonic()
        wait_for(
            lambda: metric(scrape(port), "shopsentry_rule_set_version ") >= 3,
            60,
            "the worker to apply rule-set version 3",
        )
        applied_s = time.monotonic() - published
        produce(log, ((t, k, v) for t, k, v, *_ in rows[half:]))
        purchases = {r[6] for r in rows if r[4] == "purchase"}
        wait_for(
            lambda: len({d.event_id for d in decisions_of(settings)}) >= len(purchases),
            240,
            "a decision for every purchase",
        )
        hits = metric(
            scrape(port), 'shopsentry_rule_hits_total{mode="active",rule="card_payments"}'
        )
    finally:
        supervisor.stop()
        supervisor.wait(timeout=60)
        log.close()
    print(f"rule set applied {applied_s:.2f}s after it was published")
    decisions = decisions_of(settings)
    assert Counter(Counter(d.event_id for d in decisions).values()) == {1: len(purchases)}
    second = {r[6] for r in rows[half:] if r[4] == "purchase"}
    payment = {r[6]: r[2] for r in rows if r[4] == "purchase"}
    for d in decisions:
        if d.event_id not in second:
            assert d.rule_set_version == 0 and d.rules_fired == ()
            continue
        assert d.rule_set_version == 3
        is_card = b'"payment_method":"card"' in payment[d.event_id]
        if d.user_id == vip:
            assert d.band == "approve" and d.list_hits == ("allow:user",)
        elif is_card:
            assert d.band == "decline" and "card_payments" in d.rules_fired
        else:
            assert "card_payments" not in d.rules_fired and d.band == d.model_band
        assert ("draft_big" in d.shadow_rules_fired) == (d.amount > 100.0)
    assert hits == sum(1 for d in decisions if "card_payments" in d.rules_fired)
