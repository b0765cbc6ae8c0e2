"""A client's retry on real backends: the same events posted again, at new offsets, are
decided once and counted once (embedded log + LMDB, Kafka + Redis)."""

from __future__ import annotations

from collections import Counter

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings
from shopsentry.detection.runner import Supervisor
from shopsentry.detection.worker import WorkerOptions
from shopsentry.events.schema import DECISION
from shopsentry.features.state import BehaviorState, PurchaseState
from shopsentry.features.state_store import BEHAVIOR_NS, PURCHASE_NS, StateConfig, open_store

from . import conftest as fx
from .conftest import Champion
from .test_detector import idle_s, records_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_reposted_event_is_decided_once_and_counted_once(
    backend: Settings, champion: Champion
) -> None:
    settings = backend
    fx.promote(settings, champion, "1")
    rows = list(records_of(fx.simulator(days=0.5), settings))[:600]
    purchases = [r for r in rows if r[4] == "purchase"]
    behaviour = [r for r in rows if r[4] != "purchase"]
    # The retries: every fifth purchase and behaviour event, posted again after the rest
    # (new offsets, some in a later batch than the original, some in the same).
    retries = purchases[::5] + behaviour[::5]
    log = open_log(BusConfig.from_settings(settings))
    fx.produce(log, ((t, k, v) for t, k, v, *_ in [*rows, *retries]))
    supervisor = Supervisor(settings, 1, WorkerOptions(exit_when_idle_s=idle_s(settings)))
    supervisor.start()
    try:
        statuses = supervisor.wait(timeout=240)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
    assert statuses[0].exitcode == 0
    summary = statuses[0].summary
    assert summary is not None and summary.records == len(rows) + len(retries)

    decided = Counter(
        DECISION.validate_json(r.value).event_id
        for r in fx.read_topic(log, settings.topics.decisions.name)
    )
    log.close()
    assert decided == Counter(r[6] for r in purchases)  # each purchase once, retries none

    store = open_store(StateConfig.from_settings(settings))
    try:
        bought = {u: PurchaseState.from_bytes(raw).n for u, raw in store.items(PURCHASE_NS)}
        seen = {u: BehaviorState.from_bytes(raw).n for u, raw in store.items(BEHAVIOR_NS)}
    finally:
        store.close()
    assert bought == dict(Counter(r[5] for r in purchases))
    assert seen == dict(Counter(r[5] for r in behaviour))
    assert summary.purchases == len(purchases)


def test_the_duplicates_are_counted_in_a_metric(backend: Settings, champion: Champion) -> None:
    settings = backend
    fx.promote(settings, champion, "1")
    rows = list(records_of(fx.simulator(days=0.5), settings))[:200]
    purchases = [r for r in rows if r[4] == "purchase"]
    log = open_log(BusConfig.from_settings(settings))
    fx.produce(log, ((t, k, v) for t, k, v, *_ in [*rows, *purchases[:3]]))
    log.close()
    port = fx.free_port()
    supervisor = Supervisor(settings, 1, WorkerOptions(metrics_port=port))
    supervisor.start()
    try:
        topic = settings.topics.purchase_events.name
        line = f'shopsentry_duplicate_events_total{{topic="{topic}"}}'

        def counted() -> bool:
            try:
                return fx.metric(fx.scrape(port), line) == 3
            except OSError:  # the endpoint is not up yet
                return False

        fx.wait_for(counted, 240, "three duplicates in shopsentry_duplicate_events_total")
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
