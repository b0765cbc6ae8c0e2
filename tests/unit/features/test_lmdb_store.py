"""The LMDB state store: round trips with applied offsets, fencing, atomic saves, the
import of an earlier SQLite store, growth of a full map, sharing between processes, and
its outbox."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import ConfigError, StateFenced
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import BEHAVIOR_NS, NOTHING_APPLIED, PURCHASE_NS, StateStore

from .state_contract import check_outbox

TP0, TP1 = TopicPartition("purchase-events", 0), TopicPartition("purchase-events", 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStateStore]:
    s = LmdbStateStore(tmp_path / "state.lmdb")
    yield s
    s.close()


def test_outbox_points_partitions_at_their_last_batch(tmp_path: Path) -> None:
    store = LmdbStateStore(tmp_path / "s.lmdb")
    try:
        check_outbox(store)
    finally:
        store.close()


def test_local_store_round_trip_and_applied_offsets(store: LmdbStateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.load(PURCHASE_NS, ["a"]) == {}
    assert store.applied_offsets([TP0]) == {TP0: NOTHING_APPLIED}
    store.save({PURCHASE_NS: {"a": b"1", "b": b"2"}}, {TP0: 5})
    store.save({PURCHASE_NS: {"a": b"3"}}, {TP0: 3, TP1: 9})  # TP0 may never move backwards
    assert store.load(PURCHASE_NS, ["a", "b", "c", "a"]) == {"a": b"3", "b": b"2"}
    assert store.applied_offsets([TP0, TP1]) == {TP0: 5, TP1: 9}
    assert dict(store.items(PURCHASE_NS)) == {"a": b"3", "b": b"2"}
    store.clear()
    assert dict(store.items(PURCHASE_NS)) == {}


def test_local_store_loads_more_keys_than_one_sql_statement_takes(store: LmdbStateStore) -> None:
    states = {f"user-{i}": str(i).encode() for i in range(2_300)}
    store.save({PURCHASE_NS: states}, {})
    assert store.load(PURCHASE_NS, list(states)) == states


def test_local_store_fences_out_a_writer_behind_the_stored_offsets(
    store: LmdbStateStore,
) -> None:
    store.save({PURCHASE_NS: {"a": b"new-owner"}}, {TP0: 20})
    with pytest.raises(StateFenced, match=r"purchase-events\[0\] has applied offset 20"):
        store.save({PURCHASE_NS: {"a": b"old", "b": b"old"}}, {TP0: 15}, expected={TP0: 9})
    assert store.load(PURCHASE_NS, ["a", "b"]) == {"a": b"new-owner"}  # nothing written
    store.save({PURCHASE_NS: {"a": b"next"}}, {TP0: 25, TP1: 3}, expected={TP0: 20, TP1: -1})
    assert store.load(PURCHASE_NS, ["a"]) == {"a": b"next"}
    assert store.applied_offsets([TP0, TP1]) == {TP0: 25, TP1: 3}


def test_local_store_save_is_atomic(store: LmdbStateStore) -> None:
    with pytest.raises(ConfigError):
        store.save({PURCHASE_NS: {"a": b"1"}, "typo": {"b": b"2"}}, {TP0: 1})
    assert store.load(PURCHASE_NS, ["a"]) == {}
    assert store.applied_offsets([TP0]) == {TP0: NOTHING_APPLIED}


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE state (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
        "PRIMARY KEY (ns, key)) WITHOUT ROWID",
        "CREATE TABLE user_state (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
        "PRIMARY KEY (ns, key))",
    ],
    ids=["sqlite-v1", "sqlite-v2"],
)
def test_local_store_imports_a_sqlite_store_of_an_earlier_version(tmp_path: Path, ddl: str) -> None:
    legacy = tmp_path / "group.sqlite"
    old = sqlite3.connect(legacy)
    old.execute(ddl)
    table = ddl.split()[2]
    old.execute(f"INSERT INTO {table} VALUES ('purchase', 'a', x'01'), ('behavior', 'a', x'02')")
    old.execute(
        "CREATE TABLE applied (topic TEXT NOT NULL, part INTEGER NOT NULL, "
        "last_offset INTEGER NOT NULL, PRIMARY KEY (topic, part)) WITHOUT ROWID"
    )
    old.execute("INSERT INTO applied VALUES ('purchase-events', 0, 41)")
    old.commit()
    old.close()

    s = LmdbStateStore(tmp_path / "group.lmdb")
    assert s.load(PURCHASE_NS, ["a"]) == {"a": b"\x01"}
    assert dict(s.items(BEHAVIOR_NS)) == {"a": b"\x02"}
    assert s.applied_offsets([TP0]) == {TP0: 41}
    s.save({PURCHASE_NS: {"a": b"\x03"}}, {})
    s.close()
    assert not legacy.exists() and (tmp_path / "group.sqlite.migrated").exists()
    again = LmdbStateStore(tmp_path / "group.lmdb")  # imported once, not again
    assert again.load(PURCHASE_NS, ["a"]) == {"a": b"\x03"}
    again.close()


def test_local_stores_on_one_path_share_the_environment(tmp_path: Path) -> None:
    a = LmdbStateStore(tmp_path / "s.lmdb")
    b = LmdbStateStore(tmp_path / "s.lmdb")  # LMDB itself refuses a second open
    a.save({PURCHASE_NS: {"u": b"1"}}, {TP0: 3})
    a.close()
    assert b.load(PURCHASE_NS, ["u"]) == {"u": b"1"}
    assert b.applied_offsets([TP0]) == {TP0: 3}
    b.close()


def test_local_store_grows_a_full_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shopsentry.features import lmdb_store

    monkeypatch.setattr(lmdb_store, "INITIAL_MAP_SIZE", 1 << 20)
    s = LmdbStateStore(tmp_path / "small.lmdb")
    states = {f"user-{i:05d}": bytes(500) for i in range(6_000)}  # ~3 MB: more than 1 MiB
    s.save({PURCHASE_NS: states}, {TP0: 1})
    assert len(s.load(PURCHASE_NS, list(states))) == 6_000
    s.close()


def _writer(path: str, worker: int) -> None:
    s = LmdbStateStore(Path(path))
    for i in range(50):
        s.save({PURCHASE_NS: {f"w{worker}-{i}": b"x"}}, {TopicPartition("t", worker): i})
    s.close()


def test_local_store_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.lmdb"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = LmdbStateStore(path)
    assert len(dict(s.items(PURCHASE_NS))) == 100
    assert s.applied_offsets([TopicPartition("t", 0), TopicPartition("t", 1)]) == {
        TopicPartition("t", 0): 49,
        TopicPartition("t", 1): 49,
    }
    s.close()
