"""The Redis state store against a real redis-server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import ConfigError, StateFenced, StateUnavailable
from shopsentry.features.redis_store import RedisStateStore
from shopsentry.features.state_store import BEHAVIOR_NS, NOTHING_APPLIED, PURCHASE_NS, StateStore
from tests.unit.features.state_contract import check_outbox

pytestmark = pytest.mark.integration
TP0, TP1 = TopicPartition("purchase-events", 0), TopicPartition("user-behavior", 1)


@pytest.fixture
def store(redis_url: str):  # type: ignore[no-untyped-def]
    s = RedisStateStore(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield s
    s.clear()
    s.close()


def test_round_trip_namespaces_and_monotonic_offsets(store: RedisStateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.load(PURCHASE_NS, ["a"]) == {}
    assert store.applied_offsets([TP0]) == {TP0: NOTHING_APPLIED}
    store.save({PURCHASE_NS: {"a": b"p1"}, BEHAVIOR_NS: {"a": b"b1"}}, {TP0: 10})
    store.save({PURCHASE_NS: {"a": b"p2"}}, {TP0: 4, TP1: 7})  # TP0 may never move backwards
    assert store.load(PURCHASE_NS, ["a", "b", "a"]) == {"a": b"p2"}
    assert store.load(BEHAVIOR_NS, ["a"]) == {"a": b"b1"}
    assert store.applied_offsets([TP0, TP1]) == {TP0: 10, TP1: 7}
    assert dict(store.items(PURCHASE_NS)) == {"a": b"p2"}


def test_a_writer_behind_the_stored_offsets_is_fenced_out(store: RedisStateStore) -> None:
    store.save({PURCHASE_NS: {"a": b"new-owner"}}, {TP0: 20})
    with pytest.raises(StateFenced, match="purchase-events:0=20"):
        store.save({PURCHASE_NS: {"a": b"old", "b": b"old"}}, {TP0: 15}, expected={TP0: 9})
    assert store.load(PURCHASE_NS, ["a", "b"]) == {"a": b"new-owner"}  # nothing written
    store.save({PURCHASE_NS: {"a": b"next"}}, {TP0: 25, TP1: 3}, expected={TP0: 20, TP1: -1})
    assert store.load(PURCHASE_NS, ["a"]) == {"a": b"next"}
    assert store.applied_offsets([TP0, TP1]) == {TP0: 25, TP1: 3}


def test_many_keys_and_prefix_isolation(store: RedisStateStore, redis_url: str) -> None:
    states = {f"user-{i}": str(i).encode() for i in range(2_500)}
    store.save({PURCHASE_NS: states}, {TP0: 1})
    assert store.load(PURCHASE_NS, list(states)) == states
    other = RedisStateStore(redis_url, prefix=f"other-{uuid.uuid4().hex[:8]}")
    assert other.load(PURCHASE_NS, ["user-1"]) == {}
    assert other.applied_offsets([TP0]) == {TP0: NOTHING_APPLIED}
    other.close()


def test_a_bad_namespace_writes_nothing(store: RedisStateStore) -> None:
    with pytest.raises(ConfigError):
        store.save({PURCHASE_NS: {"a": b"1"}, "typo": {"b": b"2"}}, {TP0: 3})
    assert store.load(PURCHASE_NS, ["a"]) == {}
    assert store.applied_offsets([TP0]) == {TP0: NOTHING_APPLIED}


def test_state_survives_a_redis_restart_with_appendonly(tmp_path: Path) -> None:
    from tests.integration.fixtures.redis import start_redis

    server = start_redis(tmp_path / "aof", appendonly=True)
    try:
        s = RedisStateStore(server.url, prefix="durable")
        s.save({PURCHASE_NS: {"u": b"state"}}, {TP0: 42})
        s.close()
        server.process.kill()  # kill -9: no shutdown save
        server.process.wait()
        restarted = start_redis(tmp_path / "aof", appendonly=True)  # same dir, same AOF
        s2 = RedisStateStore(restarted.url, prefix="durable")
        assert s2.load(PURCHASE_NS, ["u"]) == {"u": b"state"}
        assert s2.applied_offsets([TP0]) == {TP0: 42}
        s2.close()
        restarted.stop()
    finally:
        server.stop()


def test_an_unreachable_server_is_a_transient_error() -> None:
    with pytest.raises(StateUnavailable) as info:
        RedisStateStore("redis://127.0.0.1:1/0", socket_timeout_s=0.5)
    assert info.value.retryable


def test_outbox_points_partitions_at_their_last_batch(store: RedisStateStore) -> None:
    check_outbox(store)
