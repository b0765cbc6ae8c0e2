"""Entity features and the entity store: windows, labels only from their known_at,
idempotent deltas (a redelivery or a kill -9 counts nothing twice), two workers on one
entity, and the label consumer."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopsentry.events.schema import Purchase
from shopsentry.features.definitions import FEATURE_NAMES
from shopsentry.features.entity import (
    ENTITY_FEATURES,
    EntityState,
    EntityStateDecodeError,
    entity_keys,
    entity_values,
    observe_entity_label,
    observe_entity_purchase,
)
from shopsentry.features.entity_store import EntityPurchase, LmdbEntityStore
from shopsentry.features.offline import KnownLabel, offline_features

from .entity_contract import check_prepared_states, prepare

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TS0 = T0.timestamp()
DAY = 86_400.0
NAMES = [name.split("_", 1)[1] for name, _ in ENTITY_FEATURES[:13]]


def values(state: EntityState, user: str, ts: float) -> dict[str, float]:
    return dict(zip(NAMES, entity_values([state], user, ts), strict=True))


def purchase(seconds: float, user: str, n: int, **kw: Any) -> Purchase:
    fields: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "source": "pos",
        "user_id": user,
        "occurred_at": T0 + timedelta(seconds=seconds),
        "order_id": f"or-{n}",
        "amount": 10.0,
        "item_count": 1,
        "payment_method": "card",
        "card_fingerprint": f"card-{user}",
        "country": "DE",
        "billing_country": "DE",
        "terminal_id": "term-1",
    }
    fields.update(kw)
    return Purchase(**fields)


def test_entity_names_are_in_the_row_and_keys_follow_the_purchase() -> None:
    assert all(name in FEATURE_NAMES for name, _ in ENTITY_FEATURES)
    keys = entity_keys(purchase(0, "u1", 1))
    assert keys == ["card:card-u1", None, None, "terminal:term-1", None]


def test_windows_count_purchases_amounts_and_distinct_users() -> None:
    s = EntityState()
    observe_entity_purchase(s, "u1", 10.0, TS0 - 20 * DAY)
    observe_entity_purchase(s, "u2", 20.0, TS0 - 3 * DAY)
    observe_entity_purchase(s, "u3", 30.0, TS0 - 2 * 3600)
    observe_entity_purchase(s, "u3", 40.0, TS0 - 60)
    v = values(s, "u9", TS0)
    assert (v["purchases_1d"], v["purchases_7d"], v["purchases_30d"]) == (2, 3, 4)
    assert (v["amount_1d"], v["amount_7d"], v["amount_30d"]) == (70, 90, 100)
    # with this purchase's user: u3 within the hour, u3 in 24 h, u2 + u3 in 7 d
    assert (v["users_1h"], v["users_24h"], v["users_7d"]) == (2, 2, 3)
    assert values(s, "u3", TS0)["users_1h"] == 1  # the user itself counts once
    assert v["fraud_share_30d"] == 0 and v["days_since_fraud"] != v["days_since_fraud"]
    assert values(EntityState(), "u1", TS0)["fraud_share_7d"] != 0  # NaN: no purchases


def test_the_state_is_the_same_whatever_order_the_deltas_came_in() -> None:
    """Two workers draining a backlog apply each other's purchases out of time order: the
    state (and so every feature read from it) must not depend on that order."""
    import random

    deltas = [(f"u{i % 40}", float(i), TS0 - (200 - i) * 1800.0) for i in range(200)]
    in_order = EntityState()
    for user, amount, ts in deltas:
        observe_entity_purchase(in_order, user, amount, ts)
    shuffled = EntityState()
    mixed = list(deltas)
    random.Random(7).shuffle(mixed)
    for user, amount, ts in mixed:
        observe_entity_purchase(shuffled, user, amount, ts)
    assert shuffled == in_order
    assert len(in_order.users) == 32  # the most recent 32 by time
    # a worker ahead: a user seen after the purchase being decided does not count
    ahead = EntityState()
    observe_entity_purchase(ahead, "u1", 10.0, TS0 - 60)
    observe_entity_purchase(ahead, "u2", 10.0, TS0 + 60)
    assert values(ahead, "u3", TS0)["users_1h"] == 2


def test_a_label_counts_only_from_its_known_at() -> None:
    s = EntityState()
    observe_entity_purchase(s, "u1", 10.0, TS0 - 2 * DAY)
    observe_entity_purchase(s, "u2", 10.0, TS0 - DAY)
    known = TS0 + 3600
    observe_entity_label(s, "ev-a", True, TS0 - 2 * DAY, known)
    assert values(s, "u3", known - 1)["fraud_share_7d"] == 0.0  # not known yet: no leak
    after = values(s, "u3", known)
    assert after["fraud_share_7d"] == 0.5
    assert after["days_since_fraud"] == pytest.approx((known - (TS0 - 2 * DAY)) / DAY)
    observe_entity_label(s, "ev-a", True, TS0 - 2 * DAY, known)  # again: no change
    assert values(s, "u3", known)["fraud_share_7d"] == 0.5
    observe_entity_label(s, "ev-a", False, TS0 - 2 * DAY, known)  # a review withdrew it
    assert values(s, "u3", known)["fraud_share_7d"] == 0.0


def test_state_round_trips_and_bad_bytes_are_refused() -> None:
    s = EntityState()
    observe_entity_purchase(s, "u1", 10.0, TS0)
    observe_entity_label(s, "ev-1", True, TS0, TS0 + 5)
    assert EntityState.from_bytes(s.to_bytes()) == s
    with pytest.raises(EntityStateDecodeError):
        EntityState.from_bytes(b"[7]")


def delta(n: int, user: str = "u1", key: str = "terminal:t1", ts: float = TS0) -> EntityPurchase:
    return EntityPurchase(f"ev-{n}", user, 10.0, ts + n, (key,))


def test_a_redelivered_purchase_counts_once(tmp_path: Path) -> None:
    store = LmdbEntityStore(tmp_path / "e.lmdb")
    assert store.apply_purchases([delta(1), delta(2)]) == 2
    # A worker killed after applying and before committing gets both again, plus a new one.
    assert store.apply_purchases([delta(1), delta(2), delta(3)]) == 1
    state = store.load(["terminal:t1"])["terminal:t1"]
    assert values(state, "u1", TS0 + 10)["purchases_1d"] == 3
    store.close()
    reopened = LmdbEntityStore(tmp_path / "e.lmdb")  # what a restarted process sees
    assert values(reopened.load(["terminal:t1"])["terminal:t1"], "u", TS0 + 10)["purchases_1d"] == 3
    reopened.close()


def test_a_label_before_its_purchase_waits_for_it(tmp_path: Path) -> None:
    store = LmdbEntityStore(tmp_path / "e.lmdb")
    assert store.apply_labels([KnownLabel("ev-1", True, TS0 + 100)]) == 0
    store.apply_purchases([delta(1)])
    state = store.load(["terminal:t1"])["terminal:t1"]
    assert values(state, "u2", TS0 + 100)["fraud_share_1d"] == 1.0
    assert store.apply_labels([KnownLabel("ev-1", True, TS0 + 100)]) == 1  # idempotent
    assert len(store.load(["terminal:t1"])["terminal:t1"].frauds) == 1
    store.close()


def _worker(path: str, first: int, count: int) -> None:
    store = LmdbEntityStore(Path(path))
    for n in range(first, first + count, 10):
        store.apply_purchases([delta(i, user=f"u{i}") for i in range(n, n + 10)])
    store.close()


def test_two_workers_updating_one_entity_both_count(tmp_path: Path) -> None:
    path = str(tmp_path / "e.lmdb")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(path, first, 300)) for first in (0, 10_000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    store = LmdbEntityStore(Path(path))
    state = store.load(["terminal:t1"])["terminal:t1"]
    assert sum(b[1] for b in state.days) == 600  # every purchase of both, none twice
    store.close()


def test_offline_labels_honour_known_at() -> None:
    """A terminal's fraud is visible to a later purchase only once its label is known."""
    events = [purchase(0, "u1", 1), purchase(3600, "u2", 2), purchase(7200, "u3", 3)]
    label = KnownLabel("ev-1", True, (T0 + timedelta(seconds=5000)).timestamp())
    frame = offline_features(iter(events), labels=[label])
    col = FEATURE_NAMES.index("terminal_fraud_share_1d")
    assert frame.X[1, col] == 0.0  # at 3600 s the label (known at 5000 s) is unknown
    assert frame.X[2, col] == 0.5  # at 7200 s: 1 of the 2 earlier purchases


def _apply_forever(path: str, ready: Any) -> None:
    store = LmdbEntityStore(Path(path))
    n = 0
    while True:  # until killed
        store.apply_purchases([delta(i, user=f"u{i}") for i in range(n, n + 10)])
        n += 10
        if n == 200:
            ready.set()


def test_kill_9_mid_stream_then_replay_counts_each_purchase_once(tmp_path: Path) -> None:
    """A worker killed at an arbitrary point (inside a write transaction or between two)
    leaves every purchase counted once or not at all; replaying them all then counts
    each exactly once."""
    path = str(tmp_path / "e.lmdb")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    worker = ctx.Process(target=_apply_forever, args=(path, ready))
    worker.start()
    assert ready.wait(timeout=300)
    worker.kill()  # SIGKILL
    worker.join(timeout=60)
    store = LmdbEntityStore(Path(path))
    before = sum(b[1] for b in store.load(["terminal:t1"])["terminal:t1"].days)
    assert before >= 200 and before % 10 == 0  # whole transactions only
    replayed = int(before) + 50
    store.apply_purchases([delta(i, user=f"u{i}") for i in range(replayed)])
    after = sum(b[1] for b in store.load(["terminal:t1"])["terminal:t1"].days)
    assert after == replayed
    store.close()


def test_prepared_states_are_written_only_where_nobody_else_wrote(tmp_path: Path) -> None:
    store = LmdbEntityStore(tmp_path / "e.lmdb")
    reference = LmdbEntityStore(tmp_path / "reference.lmdb")
    check_prepared_states(store, reference)
    store.close()
    reference.close()


def test_a_prepared_batch_applies_its_waiting_label(tmp_path: Path) -> None:
    store = LmdbEntityStore(tmp_path / "e.lmdb")
    store.apply_labels([KnownLabel("ev-1", True, TS0 + 100)])
    batch = [delta(1), delta(2)]
    assert store.apply_purchases(batch, prepare(store, batch)) == 2
    state = store.load(["terminal:t1"])["terminal:t1"]
    assert values(state, "u2", TS0 + 100)["fraud_share_1d"] == 0.5
    assert values(state, "u2", TS0 + 100)["purchases_1d"] == 2
    store.close()
