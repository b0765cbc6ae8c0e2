"""Fraud features: defined once, as feature groups (:mod:`.definitions`), computed online
from per-user state (:mod:`.state`, updated by :mod:`.observe`, kept in a
:mod:`.state_store`) and offline, point in time, by replaying history through the same
feature step (:mod:`.offline`).

    from shopsentry.features import (FEATURE_NAMES, PurchaseState, BehaviorState,
        feature_vector, observe_purchase, observe_behavior, feature_matrix,
        offline_features, events_from_table)
"""

from shopsentry.features.definitions import (
    FEATURE_DESCRIPTIONS,
    FEATURE_FAMILIES,
    FEATURE_NAMES,
    GROUPS,
    FeatureGroup,
    feature_vector,
    purchase_step,
)
from shopsentry.features.observe import observe_behavior, observe_purchase
from shopsentry.features.offline import (
    FeatureFrame,
    TableEvents,
    events_from_table,
    feature_matrix,
    offline_features,
    read_events_table,
)
from shopsentry.features.state import BehaviorState, PurchaseState, StateDecodeError

__all__ = [
    "FEATURE_DESCRIPTIONS",
    "FEATURE_FAMILIES",
    "FEATURE_NAMES",
    "GROUPS",
    "BehaviorState",
    "FeatureFrame",
    "FeatureGroup",
    "PurchaseState",
    "StateDecodeError",
    "TableEvents",
    "events_from_table",
    "feature_matrix",
    "feature_vector",
    "observe_behavior",
    "observe_purchase",
    "offline_features",
    "purchase_step",
    "read_events_table",
]
