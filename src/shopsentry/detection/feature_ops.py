"""The detector's view of :mod:`shopsentry.features`: the one feature definition, driven
event by event (the offline path replays the same functions for training).

Per batch, the entity states of the batch's purchases are read from the shared entity
store once (:meth:`SharedFeatureOps.begin_batch`), each purchase reads and updates them
in memory through the one feature step, and the batch's deltas are applied to the store
atomically and idempotently (:meth:`SharedFeatureOps.end_batch`) before any decision is
produced: a crash after that point redelivers purchases the store already counted, and
skips them.

The worker keeps the entity states it wrote, with the bytes it wrote
(:data:`MAX_CACHED_ENTITIES`, oldest out): a batch whose read finds exactly those bytes
in the store (no other worker changed the entity since) takes the kept state instead of
decoding it — the same state, since decoding what was written gives it back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from shopsentry.events.schema import Purchase
from shopsentry.features.definitions import FEATURE_NAMES, NO_ENTITIES, Entities, purchase_step
from shopsentry.features.entity import EntityState, entity_keys
from shopsentry.features.entity_store import EntityPurchase, EntityStore, Prepared
from shopsentry.features.observe import observe_behavior
from shopsentry.features.state import BehaviorState, PurchaseState

MAX_CACHED_ENTITIES = 50_000  # entity states kept between batches (oldest out)


class SharedFeatureOps:
    """:class:`~shopsentry.detection.hot_path.FeatureOps` over the shared definitions.

    Without an entity store, entity features are missing (NaN) — for tests and tools
    that score without one; the detector always has one (:func:`default_feature_ops`)."""

    names: tuple[str, ...] = FEATURE_NAMES

    def __init__(self, entities: EntityStore | None = None) -> None:
        self.entities = entities
        # event id -> its entity keys (None: names none), and the keys it names
        self._keys: dict[str, tuple[list[str | None], tuple[str, ...]]] = {}
        self._read: dict[str, bytes | None] = {}
        self._version: int | None = None
        self._states: dict[str, EntityState] = {}
        self._dirty: set[str] = set()
        self._deltas: list[EntityPurchase] = []
        # key -> (the state this worker wrote, the bytes it wrote): see the module doc.
        # A batch takes its entities out; only a durable write puts them back.
        self._kept: dict[str, tuple[EntityState, bytes]] = {}

    def purchase_state(self, raw: bytes | None) -> PurchaseState:
        return PurchaseState.from_bytes(raw)

    def behavior_state(self, raw: bytes | None) -> BehaviorState:
        return BehaviorState.from_bytes(raw)

    def begin_batch(self, purchases: Sequence[Purchase]) -> None:
        """Read the entity states of ``purchases`` from the store (one read)."""
        self._deltas = []
        self._dirty = set()  # a batch whose end failed is begun again from a fresh read
        if self.entities is None:
            return
        self._keys = {p.event_id: _keys(p) for p in purchases}
        unique = {k for _, present in self._keys.values() for k in present}
        read, self._version = self.entities.read_versioned(sorted(unique)) if unique else ({}, None)
        self._read = read
        kept = self._kept
        states = self._states = {}
        for key, raw in read.items():
            held = kept.pop(key, None)
            states[key] = (
                held[0] if held is not None and held[1] == raw else EntityState.from_bytes(raw)
            )

    def purchase_step(
        self, purchase: Purchase, pstate: PurchaseState, bstate: BehaviorState
    ) -> tuple[Sequence[float], PurchaseState]:
        ts = purchase.occurred_at.timestamp()
        if self.entities is None:
            return purchase_step(pstate, bstate, NO_ENTITIES, purchase, ts), pstate
        keys, present = self._keys.get(purchase.event_id) or _keys(purchase)
        states = self._states
        entities: Entities = [None if k is None else states[k] for k in keys]
        try:
            row = purchase_step(pstate, bstate, entities, purchase, ts)
        except Exception:
            self._dirty.update(present)  # maybe half-applied
            raise
        self._deltas.append(
            EntityPurchase(purchase.event_id, purchase.user_id, purchase.amount, ts, present)
        )
        return row, pstate

    def end_batch(self) -> None:
        """Apply the batch's purchases to the shared entity store (atomic, idempotent)."""
        if self.entities is not None and self._deltas:
            prepared = Prepared(self._read, self._states, frozenset(self._dirty), self._version)
            self.entities.apply_purchases(self._deltas, prepared)
            self._keep(prepared.written)
        self._deltas = []
        self._read = {}
        self._version = None
        self._states = {}
        self._dirty = set()
        self._keys = {}

    def _keep(self, written: dict[str, tuple[EntityState, bytes]]) -> None:
        kept = self._kept
        kept.update(written)
        excess = len(kept) - MAX_CACHED_ENTITIES
        if excess > 0:
            for key in list(itertools.islice(kept, excess)):
                del kept[key]

    def observe_behavior(self, bstate: BehaviorState, event: Any) -> BehaviorState:
        observe_behavior(bstate, event)
        return bstate

    def dump(self, state: PurchaseState | BehaviorState) -> bytes:
        return state.to_bytes()


def _keys(purchase: Purchase) -> tuple[list[str | None], tuple[str, ...]]:
    keys = entity_keys(purchase)
    return keys, tuple(k for k in keys if k is not None)


def default_feature_ops(entities: EntityStore | None = None) -> SharedFeatureOps:
    return SharedFeatureOps(entities)
