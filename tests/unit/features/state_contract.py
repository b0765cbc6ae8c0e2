"""What every state backend must do with the outbox (run on LMDB here, on Redis in
tests/integration/detection)."""

from __future__ import annotations

import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import StateFenced
from shopsentry.features.state_store import PURCHASE_NS, StateStore

A, B, C = (TopicPartition("purchase-events", p) for p in range(3))


def check_outbox(store: StateStore) -> None:
    assert store.outbox([A, B]) == []
    store.save({PURCHASE_NS: {"u": b"1"}}, {A: 4, B: 2}, outbox=("w-000000000001", b"first"))
    assert store.outbox([A]) == [b"first"]
    assert store.outbox([A, B, C]) == [b"first"]  # one batch, returned once
    # A's next batch replaces A's pointer; B still points at the first batch.
    store.save({}, {A: 9}, outbox=("w-000000000002", b"second"))
    assert store.outbox([A, B]) == [b"first", b"second"]
    # B moves on with nothing to send: the first batch's blob is garbage now.
    store.save({}, {B: 5})
    assert store.outbox([A, B]) == [b"second"]
    # A fenced save writes no outbox either.
    with pytest.raises(StateFenced):
        store.save({}, {A: 12}, expected={A: 3}, outbox=("x-000000000001", b"stale"))
    assert store.outbox([A, B, C]) == [b"second"]
    store.clear()
    assert store.outbox([A]) == []
