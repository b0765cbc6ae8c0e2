"""A client's retry (the same event_id at a new offset) is counted and decided once."""

from __future__ import annotations

import json

import orjson
import pytest

from shopsentry.bus.base import Record
from shopsentry.config import DetectorSettings, TopicsSettings
from shopsentry.detection.dedupe import Recent, RecentEventIds
from shopsentry.detection.hot_path import HotPath, StateCache
from shopsentry.detection.worker import hot_path_config
from shopsentry.events.codec import encode
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import BEHAVIOR_NS, PURCHASE_NS, SEEN_NS

from .fakes import FakeOps, FakeScorer, login, purchase

PT, BT = "purchase-events", "user-behavior"


def rec(topic: str, offset: int, value: bytes, key: bytes = b"u1") -> Record:
    return Record(topic, 0, offset, 1_000 + offset, key, value)


def decided(out) -> list[str]:  # type: ignore[no-untyped-def]
    return [orjson.loads(o.value)["event_id"] for o in out.outputs if o.topic == "decisions"]


def make_pipe(cache: StateCache | None = None, keep: int = 4) -> HotPath:
    config = hot_path_config(TopicsSettings(), DetectorSettings())
    return HotPath(config, FakeOps(), cache=cache, recent=RecentEventIds(PT, keep))


def run(pipe: HotPath, store: LmdbStateStore, records: list[Record]):  # type: ignore[no-untyped-def]
    out = pipe.process(records, {}, FakeScorer(), store)
    store.save(out.state_changes, out.applied)
    if pipe.cache is not None:
        pipe.cache.put(out.state_objects)
    return out


def test_the_memory_keeps_the_last_ids_only() -> None:
    recent = Recent(keep=4)
    assert [recent.seen(f"e{n}") for n in range(6)] == [False] * 6
    assert [recent.seen(f"e{n}") for n in (5, 4, 3, 2)] == [True] * 4
    assert not recent.seen("e0")  # forgotten: the bound
    assert recent.to_bytes() == b"e3\ne4\ne5\ne0"
    assert Recent.from_bytes(recent.to_bytes(), 4).order == recent.order
    assert list(Recent.from_bytes(None, 4).order) == []


def test_a_purchase_posted_twice_in_one_batch_is_decided_and_counted_once(
    store: LmdbStateStore,
) -> None:
    raw = encode(purchase(1))
    out = run(
        make_pipe(), store, [rec(PT, 0, raw), rec(PT, 1, encode(purchase(2))), rec(PT, 2, raw)]
    )
    assert decided(out) == ["p-u1-1", "p-u1-2"]
    assert json.loads(out.state_changes[PURCHASE_NS]["u1"])["purchases"] == 2
    assert out.duplicates == {PT: 1}
    assert max(out.applied.values()) == 2  # the duplicate's offset is applied: no redelivery


@pytest.mark.parametrize("cached", [False, True], ids=["from the store", "from the cache"])
def test_a_retry_in_a_later_batch_is_dropped(store: LmdbStateStore, cached: bool) -> None:
    pipe = make_pipe(StateCache() if cached else None)
    run(pipe, store, [rec(PT, 0, encode(purchase(1))), rec(BT, 0, encode(login(0)))])
    retry = run(pipe, store, [rec(PT, 5, encode(purchase(1))), rec(BT, 3, encode(login(0)))])
    assert decided(retry) == [] and retry.duplicates == {PT: 1, BT: 1}
    assert json.loads(store.load(PURCHASE_NS, ["u1"])["u1"])["purchases"] == 1
    assert json.loads(store.load(BEHAVIOR_NS, ["u1"])["u1"])["logins"] == 1
    # A new event after the retry is counted as usual.
    later = run(pipe, store, [rec(PT, 6, encode(purchase(2)))])
    assert decided(later) == ["p-u1-2"] and later.duplicates == {}


def test_each_user_and_topic_has_its_own_memory(store: LmdbStateStore) -> None:
    out = run(
        make_pipe(),
        store,
        [
            rec(PT, 0, encode(purchase(1, "u1"))),
            rec(PT, 1, encode(purchase(1, "u2")), key=b"u2"),  # another id: p-u2-1
            rec(BT, 0, encode(login(1, "u1"))),
        ],
    )
    assert out.duplicates == {}
    assert store.load(SEEN_NS, ["p:u1", "p:u2", "b:u1"]) == {
        "p:u1": b"p-u1-1",
        "p:u2": b"p-u2-1",
        "b:u1": b"l-u1-1",
    }


def test_a_broken_event_with_a_used_id_is_dead_lettered_not_dropped(store: LmdbStateStore) -> None:
    pipe = make_pipe()
    run(pipe, store, [rec(PT, 0, encode(purchase(1)))])
    broken = orjson.dumps({**orjson.loads(encode(purchase(1))), "amount": -5})
    out = run(pipe, store, [rec(PT, 1, broken)])
    assert out.duplicates == {} and out.dead_letters == {"decode": 1}


def test_a_retry_beyond_the_memory_counts_again(store: LmdbStateStore) -> None:
    pipe = make_pipe(keep=2)
    run(pipe, store, [rec(PT, n, encode(purchase(n))) for n in range(3)])
    again = run(pipe, store, [rec(PT, 3, encode(purchase(0)))])
    assert decided(again) == ["p-u1-0"]  # the bound: 2 ids per user and topic
