"""What every entity store backend must do with a worker's prepared states (shared by
the LMDB unit tests and the Redis integration tests): written as they are when no other
worker changed the entity since it was read, re-applied on top of the other's write
otherwise, and a redelivered purchase counted once either way — the same bytes as
re-applying every delta."""

from __future__ import annotations

from collections.abc import Sequence

from shopsentry.features.entity import EntityState, observe_entity_purchase
from shopsentry.features.entity_store import EntityPurchase, EntityStore, Prepared


def prepare(store: EntityStore, deltas: Sequence[EntityPurchase]) -> Prepared:
    """What a worker holds at the end of its batch: the states as read, then every
    delta applied in memory (redelivered ones too, as the feature step does)."""
    read, version = store.read_versioned(sorted({k for d in deltas for k in d.keys}))
    states = {k: EntityState.from_bytes(v) for k, v in read.items()}
    for d in deltas:
        for key in d.keys:
            observe_entity_purchase(states[key], d.user_id, d.amount, d.ts)
    return Prepared(read, states, version=version)


def delta(n: int, key: str = "terminal:t1", ts0: float = 1_772_452_800.0) -> EntityPurchase:
    return EntityPurchase(f"ev-{n}", f"u{n % 7}", 10.0 + n, ts0 + 60 * n, (key, "card:c1"))


def check_prepared_states(store: EntityStore, reference: EntityStore) -> None:
    """``store`` driven with prepared states, ``reference`` with bare deltas in the same
    order: the same stored bytes after a clean batch, a race, a redelivery, a dirty key."""
    keys = ["terminal:t1", "card:c1", "terminal:t2"]

    def both(deltas: list[EntityPurchase], prepared: Prepared | None, new: int) -> None:
        assert store.apply_purchases(deltas, prepared) == new
        assert reference.apply_purchases(deltas) == new
        assert store.read(keys) == reference.read(keys)
        if prepared is not None:  # what it wrote, as the worker keeps it for its next batch
            written = prepared.written
            assert written and set(written) <= {k for d in deltas for k in d.keys}
            stored = store.read(sorted(written))
            for key, (state, raw) in written.items():
                assert raw == stored[key] == state.to_bytes()

    first = [delta(n) for n in range(5)]
    both(first, prepare(store, first), 5)  # nobody else wrote: written as prepared
    mine = [delta(n) for n in range(5, 9)]
    held = prepare(store, mine)
    other = [delta(n, "terminal:t2") for n in range(20, 23)]  # another worker, card:c1 too
    both(other, prepare(store, other), 3)
    both(mine, held, 4)  # card:c1 changed meanwhile: re-applied, the other's still count
    again = [delta(n) for n in range(7, 12)]  # 7 and 8 redelivered with 3 new
    both(again, prepare(store, again), 3)
    dup = [delta(30), delta(30)]  # one purchase twice in a batch
    both(dup, prepare(store, dup), 1)
    late = [delta(40)]
    held = prepare(store, late)
    observe_entity_purchase(held.states["terminal:t1"], "half", 1.0, 0.0)  # a failed step
    both(late, Prepared(held.read, held.states, frozenset({"terminal:t1"}), held.version), 1)
    assert sum(b[1] for b in store.load(["card:c1"])["card:c1"].days) == 5 + 4 + 3 + 3 + 1 + 1
