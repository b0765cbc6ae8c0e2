"""The detector's view of :mod:`shopsentry.features`: the one feature definition, driven
event by event (the offline path replays the same functions for training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shopsentry.events.schema import Purchase
from shopsentry.features.definitions import FEATURE_NAMES, purchase_step
from shopsentry.features.observe import observe_behavior
from shopsentry.features.state import BehaviorState, PurchaseState


class SharedFeatureOps:
    """:class:`~shopsentry.detection.hot_path.FeatureOps` over the shared definitions."""

    names: tuple[str, ...] = FEATURE_NAMES

    def purchase_state(self, raw: bytes | None) -> PurchaseState:
        return PurchaseState.from_bytes(raw)

    def behavior_state(self, raw: bytes | None) -> BehaviorState:
        return BehaviorState.from_bytes(raw)

    def purchase_step(
        self, purchase: Purchase, pstate: PurchaseState, bstate: BehaviorState
    ) -> tuple[Sequence[float], PurchaseState]:
        return purchase_step(pstate, bstate, purchase, purchase.occurred_at.timestamp()), pstate

    def observe_behavior(self, bstate: BehaviorState, event: Any) -> BehaviorState:
        observe_behavior(bstate, event)
        return bstate

    def dump(self, state: PurchaseState | BehaviorState) -> bytes:
        return state.to_bytes()


def default_feature_ops() -> SharedFeatureOps:
    return SharedFeatureOps()
