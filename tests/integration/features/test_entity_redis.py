"""The Redis entity store against a real redis-server: idempotent deltas, two workers
racing on one entity, labels, and a clear transient error when Redis is down."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import StateFenced
from shopsentry.features.entity_redis import RedisEntityStore
from shopsentry.features.entity_store import (
    EntityPurchase,
    EntityStoreUnavailable,
    LabelPositions,
)
from shopsentry.features.offline import KnownLabel
from tests.integration.fixtures.redis import start_redis
from tests.unit.features.entity_contract import check_prepared_states, prepare

pytestmark = pytest.mark.integration
TS0 = 1_772_452_800.0


def delta(n: int, key: str = "terminal:t1") -> EntityPurchase:
    return EntityPurchase(f"ev-{n}", f"u{n % 7}", 10.0, TS0 + n, (key,))


@pytest.fixture
def store(redis_url: str):  # type: ignore[no-untyped-def]
    s = RedisEntityStore(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def purchases_of(store: RedisEntityStore, key: str = "terminal:t1") -> int:
    return int(sum(b[1] for b in store.load([key])[key].days))


def test_redelivery_counts_nothing_twice(store: RedisEntityStore) -> None:
    assert store.apply_purchases([delta(1), delta(2)]) == 2
    assert store.apply_purchases([delta(1), delta(2), delta(3)]) == 1
    assert purchases_of(store) == 3


@pytest.mark.parametrize("prepared", [False, True], ids=["deltas", "prepared-states"])
def test_two_workers_racing_on_one_entity_both_count(redis_url: str, prepared: bool) -> None:
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def work(first: int) -> None:
        s = RedisEntityStore(redis_url, prefix=prefix)
        try:
            for n in range(first, first + 400, 4):
                batch = [delta(i) for i in range(n, n + 4)]
                s.apply_purchases(batch, prepare(s, batch) if prepared else None)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(first,)) for first in (0, 10_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    check = RedisEntityStore(redis_url, prefix=prefix)
    assert purchases_of(check) == 800
    check.close()


def test_prepared_states_are_written_only_where_nobody_else_wrote(redis_url: str) -> None:
    store = RedisEntityStore(redis_url, prefix=f"prep-{uuid.uuid4().hex[:8]}")
    reference = RedisEntityStore(redis_url, prefix=f"ref-{uuid.uuid4().hex[:8]}")
    check_prepared_states(store, reference)
    store.close()
    reference.close()


def test_labels_apply_to_their_purchase_entities(store: RedisEntityStore) -> None:
    assert store.apply_labels([KnownLabel("ev-5", True, TS0 + 99)]) == 0  # waits
    store.apply_purchases([delta(5, "device:d1")])
    assert store.apply_labels([KnownLabel("ev-5", True, TS0 + 99)]) == 1
    assert list(store.load(["device:d1"])["device:d1"].frauds) == ["ev-5"]


def test_label_positions_are_saved_with_the_labels_and_fenced(store: RedisEntityStore) -> None:
    store.apply_purchases([delta(1)])
    tp = TopicPartition("fraud-labels", 0)
    label = KnownLabel("ev-1", True, TS0 + 60)
    assert store.positions([tp]) == {}
    store.apply_labels([], LabelPositions({tp: 4}, {tp: 0}))
    with pytest.raises(StateFenced):  # another member went to 4 while this one was at 2
        store.apply_labels([label], LabelPositions({tp: 3}, {tp: 2}))
    assert store.positions([tp]) == {tp: 4}
    assert store.load(["terminal:t1"])["terminal:t1"].frauds == {}
    assert store.apply_labels([label], LabelPositions({tp: 5}, {tp: 4})) == 1
    assert store.positions([tp]) == {tp: 5}
    assert list(store.load(["terminal:t1"])["terminal:t1"].frauds) == ["ev-1"]


def test_redis_down_is_a_clear_transient_error(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    s = RedisEntityStore(server.url, prefix="down")
    server.stop()
    with pytest.raises(EntityStoreUnavailable) as caught:
        s.apply_purchases([delta(1)])
    assert caught.value.retryable
    with pytest.raises(EntityStoreUnavailable):
        s.load(["terminal:t1"])  # never an empty state standing in for a missing one
    s.close()


def test_a_clean_prepared_batch_takes_one_compare_and_set_else_the_transaction(
    store: RedisEntityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions: list[int] = []
    real = store._transaction

    def counted(*args: object) -> int:
        transactions.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_transaction", counted)
    batch = [delta(1), delta(2)]
    assert store.apply_purchases(batch, prepare(store, batch)) == 2
    assert transactions == []  # nobody else wrote, no label pending: the fast path
    assert purchases_of(store) == 2
    assert store.apply_labels([KnownLabel("ev-3", True, TS0 + 99)]) == 0  # waits for ev-3
    transactions.clear()  # labels always take the transaction
    batch = [delta(3)]
    assert store.apply_purchases(batch, prepare(store, batch)) == 1
    assert transactions == [1]  # the pending label fails the compare: the transaction
    assert list(store.load(["terminal:t1"])["terminal:t1"].frauds) == ["ev-3"]
    batch = [delta(3), delta(4)]  # ev-3 redelivered: its marker fails the compare
    assert store.apply_purchases(batch, prepare(store, batch)) == 1
    assert transactions == [1, 1]
    assert purchases_of(store) == 4
