"""The detector's feature step over the real definitions and the LMDB entity store:
entity deltas applied once per purchase, however often a batch is redelivered."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from shopsentry.bus.base import Record
from shopsentry.config import DetectorSettings, TopicsSettings
from shopsentry.detection import feature_ops
from shopsentry.detection.feature_ops import SharedFeatureOps
from shopsentry.detection.hot_path import HotPath
from shopsentry.detection.worker import hot_path_config
from shopsentry.events.codec import encode
from shopsentry.features.definitions import FEATURE_NAMES
from shopsentry.features.entity import observe_entity_purchase
from shopsentry.features.entity_store import LmdbEntityStore
from shopsentry.features.lmdb_store import LmdbStateStore

from .fakes import FakeScorer, purchase

# The hot path as the default settings configure it.
DEFAULTS = hot_path_config(TopicsSettings(), DetectorSettings())

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


class RowScorer(FakeScorer):
    """Keeps the rows it scored (any width)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[float]] = []

    def predict(self, X):  # type: ignore[no-untyped-def]
        self.rows.extend(X.tolist())
        return X[:, 0] * 0.0


def batch(users: list[str]) -> list[Record]:
    out = []
    for offset, user in enumerate(users):
        p = purchase(offset, user=user, device_fingerprint="shared-tablet", terminal_id="t-9")
        out.append(Record("purchase-events", 0, offset, 1_000, user.encode(), encode(p)))
    return out


def test_a_redelivered_batch_counts_nothing_twice_in_entity_state(tmp_path: Path) -> None:
    entities = LmdbEntityStore(tmp_path / "entities.lmdb")
    store = LmdbStateStore(tmp_path / "state.lmdb")
    pipe = HotPath(DEFAULTS, SharedFeatureOps(entities))
    records = batch(["u1", "u2", "u3"])
    scorer = RowScorer()
    out = pipe.process(records, {}, scorer, store)
    assert out.purchases == 3
    # Within the batch each purchase sees the ones before it through the shared device.
    assert [row[COL["device_purchases_1d"]] for row in scorer.rows] == [0.0, 1.0, 2.0]
    assert [row[COL["device_users_24h"]] for row in scorer.rows] == [1.0, 2.0, 3.0]
    # kill -9 before the user state and offsets were saved: the whole batch comes again.
    pipe.process(records, {}, RowScorer(), store)
    state = entities.load(["device:shared-tablet"])["device:shared-tablet"]
    assert sum(b[1] for b in state.days) == 3
    assert len(state.users) == 3
    decision = orjson.loads(out.outputs[0].value)
    assert decision["event_id"] == "p-u1-0"
    entities.close()
    store.close()


def test_a_feature_step_failing_half_way_leaves_its_entities_uncounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed purchase is dead-lettered; the entity state it half-updated in memory
    is not written as it is (the other purchases' deltas are re-applied instead)."""
    real = feature_ops.purchase_step

    def failing(pstate, bstate, entities, purchase, ts):  # type: ignore[no-untyped-def]
        if purchase.user_id == "bad":
            for state in entities:
                if state is not None:
                    observe_entity_purchase(state, purchase.user_id, purchase.amount, ts)
            raise ValueError("a feature bug after the entity updates")
        return real(pstate, bstate, entities, purchase, ts)

    monkeypatch.setattr(feature_ops, "purchase_step", failing)
    entities = LmdbEntityStore(tmp_path / "entities.lmdb")
    store = LmdbStateStore(tmp_path / "state.lmdb")
    pipe = HotPath(DEFAULTS, SharedFeatureOps(entities))
    out = pipe.process(batch(["u1", "bad", "u3"]), {}, RowScorer(), store)
    assert out.purchases == 2 and out.dead_letters == {"features": 1}
    state = entities.load(["device:shared-tablet"])["device:shared-tablet"]
    assert sum(b[1] for b in state.days) == 2
    assert set(state.users) == {"u1", "u3"}
    entities.close()
    store.close()


def test_a_kept_entity_state_is_decoded_again_once_another_worker_wrote_it(
    tmp_path: Path,
) -> None:
    """The worker keeps what it wrote, and uses it only while the store still holds
    those bytes: after another worker's purchase through the device, it counts too."""
    entities = LmdbEntityStore(tmp_path / "entities.lmdb")
    other = LmdbEntityStore(tmp_path / "entities.lmdb")
    store = LmdbStateStore(tmp_path / "state.lmdb")
    ops = SharedFeatureOps(entities)
    pipe = HotPath(DEFAULTS, ops)
    pipe.process(batch(["u1", "u2"]), {}, RowScorer(), store)
    assert "device:shared-tablet" in ops._kept
    scorer = RowScorer()
    pipe.process(batch(["u3"])[:1], {}, scorer, store)  # kept state used: nothing changed
    assert scorer.rows[0][COL["device_purchases_1d"]] == 2.0
    other_store = LmdbStateStore(tmp_path / "other.lmdb")
    twin = HotPath(DEFAULTS, SharedFeatureOps(other))
    twin.process(batch(["u4"]), {}, RowScorer(), other_store)  # another worker, same device
    scorer = RowScorer()
    pipe.process(batch(["x", "x", "u5"])[2:], {}, scorer, store)
    assert scorer.rows[0][COL["device_purchases_1d"]] == 4.0
    assert scorer.rows[0][COL["device_users_24h"]] == 5.0
    entities.close()
    other.close()
    other_store.close()
    store.close()
