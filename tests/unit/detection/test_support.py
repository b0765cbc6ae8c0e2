"""The embedded state store, the model hot-reload holder and the batch histograms."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from shopsentry.bus.base import TopicPartition
from shopsentry.detection.metrics import BatchHistogram, WorkerMetrics
from shopsentry.detection.model_reload import ModelHolder
from shopsentry.errors import ConfigError, ModelError, NoChampion, StateFenced
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import BEHAVIOR_NS, NOTHING_APPLIED, PURCHASE_NS, StateStore

from .fakes import FakeScorer

TP0, TP1 = TopicPartition("purchase-events", 0), TopicPartition("purchase-events", 1)


# -- local state store ---------------------------------------------------------------
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


# -- model holder --------------------------------------------------------------------
def test_holder_loads_a_new_champion_and_swaps_only_when_asked() -> None:
    champion = {"v": "1"}
    loads: list[str] = []

    def load() -> FakeScorer:
        loads.append(champion["v"])
        return FakeScorer(version=champion["v"])

    holder = ModelHolder(load, lambda: champion["v"], interval_s=60)
    assert holder.load_initial(lambda: False).version == "1"  # type: ignore[union-attr]
    holder.check_once()
    assert holder.swap_if_ready() is None and loads == ["1"]  # same version: nothing loaded
    champion["v"] = "2"
    holder.check_once()
    assert holder.current.version == "1"  # type: ignore[union-attr]  # not swapped mid-batch
    assert holder.swap_if_ready().version == "2"  # type: ignore[union-attr]
    assert holder.current.version == "2"  # type: ignore[union-attr]


def test_a_failed_load_keeps_the_old_model_and_is_not_retried() -> None:
    champion = {"v": "1"}
    attempts: list[str] = []

    def load() -> FakeScorer:
        attempts.append(champion["v"])
        if champion["v"] == "bad":
            raise ModelError("corrupted model file")
        return FakeScorer(version=champion["v"])

    outcomes: list[str] = []
    holder = ModelHolder(load, lambda: champion["v"], interval_s=60, on_outcome=outcomes.append)
    holder.load_initial(lambda: False)
    champion["v"] = "bad"
    holder.check_once()
    holder.check_once()
    assert holder.swap_if_ready() is None and holder.current.version == "1"  # type: ignore[union-attr]
    assert attempts == ["1", "bad"] and outcomes == ["loaded", "failed"]


def test_a_probe_error_is_survived() -> None:
    def probe() -> str:
        raise OSError("registry down")

    holder = ModelHolder(lambda: FakeScorer(), probe, interval_s=60)
    holder.load_initial(lambda: False)
    holder.check_once()
    assert holder.current.version == "1"  # type: ignore[union-attr]


def test_initial_load_waits_for_a_champion_and_honours_stop() -> None:
    calls = {"n": 0}

    def load() -> FakeScorer:
        calls["n"] += 1
        if calls["n"] < 3:
            raise NoChampion("m")
        return FakeScorer(version="9")

    holder = ModelHolder(load, lambda: None, interval_s=0.01)
    assert holder.load_initial(lambda: False).version == "9"  # type: ignore[union-attr]

    def never() -> FakeScorer:
        raise NoChampion("m")

    stop = threading.Event()
    holder2 = ModelHolder(never, lambda: None, interval_s=0.01)
    threading.Timer(0.05, stop.set).start()
    assert holder2.load_initial(stop.is_set) is None


# -- metrics -------------------------------------------------------------------------
def test_batch_histogram_matches_prometheus_le_semantics() -> None:
    h = BatchHistogram((0.01, 0.1, 1.0))
    h.observe_many(np.array([0.005, 0.01, 0.05, 0.5, 2.0]))
    buckets, total = h.snapshot()
    assert buckets == [("0.01", 2.0), ("0.1", 3.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert total == pytest.approx(2.565)
    assert h.count == 5 and h.quantile(0.5) == 0.1


def test_worker_metrics_expose_the_shared_names() -> None:
    m = WorkerMetrics()
    m.decisions.labels("approve").inc(3)
    m.e2e.observe_many([0.002, 0.004])
    m.stage["features"].observe(0.001)
    m.set_model_version("5")
    m.set_lag({("purchase-events", 1): 7})
    text = generate_latest(m.registry).decode()
    for needle in (
        'shopsentry_decisions_total{band="approve"} 3.0',
        'shopsentry_end_to_end_latency_seconds_count{since="log_timestamp"} 2.0',
        'shopsentry_stage_latency_seconds_bucket{le="0.0025",stage="features"} 1.0',
        'shopsentry_model_version_info{version="5"} 1.0',
        'shopsentry_consumer_lag{partition="1",topic="purchase-events"} 7.0',
        "shopsentry_in_flight_events 0.0",
        "shopsentry_prediction_latency_seconds_count 0.0",
    ):
        assert needle in text, needle


def test_a_busy_metrics_port_is_a_config_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            WorkerMetrics().serve(port)
    assert str(port) in info.value.one_line()
