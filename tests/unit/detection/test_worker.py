"""The worker's I/O order: state + applied offsets + outbox → outputs durable → commit,
and what a crash in each window leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shopsentry.backup.replay import Ledger
from shopsentry.bus.base import TopicPartition
from shopsentry.config import DetectorSettings, TopicsSettings
from shopsentry.detection.model_reload import ModelHolder
from shopsentry.detection.worker import Worker, WorkerConfig, WorkerOptions
from shopsentry.events.codec import encode
from shopsentry.events.schema import DECISION
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import PURCHASE_NS

from .fakes import FakeOps, FakeScorer, MemoryLog, login, purchase

PT, BT = "purchase-events", "user-behavior"
PARTS = {PT: 3, BT: 2, "decisions": 3, "fraud-alerts": 2, "dead-letter": 1}


class Crash(Exception):
    pass


def worker_config(**detector: object) -> WorkerConfig:
    """The default topics with these detector settings."""
    return WorkerConfig(TopicsSettings(), DetectorSettings(**detector))  # type: ignore[arg-type]


def make_worker(tmp_path: Path, log: MemoryLog, scorer: FakeScorer, **opts: object) -> Worker:
    store = LmdbStateStore(tmp_path / "state.lmdb")
    holder = ModelHolder(lambda: scorer, lambda: scorer.version, interval_s=60)
    options = WorkerOptions(exit_when_idle_s=0.0, **opts)  # type: ignore[arg-type]
    return Worker(worker_config(), log, store, holder, FakeOps(), options)


def as_polled() -> WorkerConfig:
    """Batches as polled, for the tests that pin which records a batch holds (the input
    alignment regroups them; tests/unit/stream/test_align.py tests it)."""
    return worker_config(align_max_idle_ms=0)


def feed(log: MemoryLog, users: int = 5, per_user: int = 4) -> None:
    for n in range(per_user):
        for u in range(users):
            user = f"u{u}"
            log.append(BT, encode(login(n, user)), user.encode())
            log.append(PT, encode(purchase(n, user, amount=100.0 + 250 * n)), user.encode())


def decision_ids(log: MemoryLog) -> list[str]:
    return [DECISION.validate_json(r.value).event_id for r in log.records("decisions")]


def purchase_counts(store: LmdbStateStore) -> dict[str, int]:
    return {u: json.loads(v)["purchases"] for u, v in store.items(PURCHASE_NS)}


def test_processes_everything_and_commits(tmp_path: Path) -> None:
    log = MemoryLog(PARTS)
    feed(log)
    worker = make_worker(tmp_path, log, FakeScorer())
    summary = worker.run()
    assert summary.purchases == 20 and summary.records == 40
    assert sorted(decision_ids(log)) == sorted(f"p-u{u}-{n}" for u in range(5) for n in range(4))
    # Amounts 100, 350, 600, 850: the last is a review (0.85), one alert per user.
    assert len(log.records("fraud-alerts")) == 5
    assert purchase_counts(worker.store) == {f"u{u}": 4 for u in range(5)}
    ends = {
        (t, p): len(log.data[t][p]) for t in (PT, BT) for p in range(PARTS[t]) if log.data[t][p]
    }
    assert {(tp.topic, tp.partition): off for (_, tp), off in log.committed.items()} == ends
    assert worker.metrics.value("shopsentry_decisions_total", {"band": "review"}) == 5
    assert worker.metrics.value("shopsentry_events_processed_total", {"topic": PT}) == 20
    assert worker.metrics.e2e.count == 20
    assert worker.metrics.value("shopsentry_model_version_info", {"version": "1"}) == 1


def crash_in(log: MemoryLog, worker: Worker, window: str, batch: int = 1) -> None:
    """Arrange a kill -9 of ``worker`` in ``window`` of its batch number ``batch`` (0-based):
    before its state save, after the save (nothing produced), after the flush (nothing
    committed). Nothing is closed on the way out, as after a real kill."""
    saves = {"n": 0}
    original_save = worker.store.save
    make_producer, make_consumer = log.producer, log.consumer

    def save(changes, applied, **kw):  # type: ignore[no-untyped-def]
        if window == "before_save" and saves["n"] == batch:
            raise Crash
        original_save(changes, applied, **kw)
        saves["n"] += 1

    def producer():  # type: ignore[no-untyped-def]
        p = make_producer()
        flush = p.flush

        def crashing_flush(timeout: float = 30.0) -> None:
            if window == "after_save" and saves["n"] == batch + 1:
                raise Crash
            flush(timeout)
            if window == "after_flush" and saves["n"] == batch + 1:
                raise Crash

        p.flush = crashing_flush  # type: ignore[method-assign]
        p.close = lambda: None  # type: ignore[method-assign]
        return p

    def consumer(*args, **kw):  # type: ignore[no-untyped-def]
        c = make_consumer(*args, **kw)
        c.close = lambda: None  # type: ignore[method-assign]  # no revocation either
        return c

    worker.store.save = save  # type: ignore[method-assign]
    log.producer = producer  # type: ignore[method-assign]
    log.consumer = consumer  # type: ignore[method-assign]


def values_by_event(log: MemoryLog, topic: str) -> dict[str, set[bytes]]:
    by_id: dict[str, set[bytes]] = {}
    for r in log.records(topic):
        by_id.setdefault(json.loads(r.value)["event_id"], set()).add(r.value)
    return by_id


@pytest.mark.parametrize("window", ["before_save", "after_save", "after_flush"])
def test_a_crash_in_any_window_leaves_one_decision_per_purchase_and_exact_counts(
    tmp_path: Path, window: str
) -> None:
    log = MemoryLog(PARTS)
    feed(log)
    first = make_worker(tmp_path, log, FakeScorer(), index=0)
    first.config = worker_config(batch_max_records=7)
    make_producer, make_consumer = log.producer, log.consumer
    crash_in(log, first, window)
    with pytest.raises(Crash):
        first.run()
    log.producer, log.consumer = make_producer, make_consumer  # type: ignore[method-assign]
    log.expire_members("fraud-detector")

    # The restarted worker scores with another model: a purchase scored again would say
    # so (version "2", another decided_at).
    second = make_worker(tmp_path, log, FakeScorer(version="2"), index=1)
    second.run()
    ids = decision_ids(log)
    expected = {f"p-u{u}-{n}" for u in range(5) for n in range(4)}
    assert set(ids) == expected
    if window == "after_flush":
        assert len(ids) > len(expected)  # the saved batch went out twice ...
    else:
        assert len(ids) == len(expected)
    # ... but a purchase has exactly one decision: any copy is the same bytes.
    for topic in ("decisions", "fraud-alerts"):
        assert all(len(v) == 1 for v in values_by_event(log, topic).values()), topic
    if window != "before_save":
        assert second.summary.skipped > 0 or second.summary.records < 40
    assert purchase_counts(second.store) == {f"u{u}": 4 for u in range(5)}


def test_a_saved_batch_is_re_produced_verbatim_even_if_the_state_moved_on(tmp_path: Path) -> None:
    """Fault 3: the behaviour state another worker keeps moves on between the crash and
    the takeover; the taken-over batch's decisions are still the first run's bytes."""
    log = MemoryLog(PARTS)
    feed(log, users=3, per_user=2)
    first = make_worker(tmp_path, log, FakeScorer(), index=0)
    first.config = as_polled()  # batch 0 holds every purchase
    make_producer, make_consumer = log.producer, log.consumer
    crash_in(log, first, "after_save", batch=0)
    with pytest.raises(Crash):
        first.run()
    assert log.records("decisions") == []
    saved = first.store.outbox(sorted({TopicPartition(PT, p) for p in range(3)}))
    assert len(saved) == 1
    log.producer, log.consumer = make_producer, make_consumer  # type: ignore[method-assign]
    log.expire_members("fraud-detector")
    first.store.save(
        {"behavior": {f"u{u}": json.dumps({"logins": 50}).encode() for u in range(3)}}, {}
    )
    second = make_worker(tmp_path, log, FakeScorer(version="2"), index=1)
    second.run()
    decisions = [DECISION.validate_json(r.value) for r in log.records("decisions")]
    assert len(decisions) == 6
    assert {d.model_version for d in decisions} == {"1"}
    assert second.summary.purchases == 0  # nothing was scored again


def test_hot_swap_between_batches_records_both_versions(tmp_path: Path) -> None:
    log = MemoryLog(PARTS)
    feed(log, users=3, per_user=2)
    v1, v2 = FakeScorer(version="1"), FakeScorer(version="2")
    worker = make_worker(tmp_path, log, v1)
    worker.config = worker_config(batch_max_records=2)
    current = {"scorer": v1}
    worker.holder = ModelHolder(
        lambda: current["scorer"], lambda: current["scorer"].version, interval_s=60
    )
    original = worker.handler.saved
    saved = {"n": 0}

    def after_save(result):  # type: ignore[no-untyped-def]
        original(result)
        saved["n"] += 1
        if saved["n"] == 2:
            current["scorer"] = v2
            worker.holder.check_once()  # what the poll thread does

    worker.handler.saved = after_save  # type: ignore[method-assign]
    summary = worker.run()
    versions = [DECISION.validate_json(r.value).model_version for r in log.records("decisions")]
    assert set(versions) == {"1", "2"} and len(versions) == 6
    assert summary.model_versions == ["1", "2"]
    assert worker.metrics.value("shopsentry_model_version_info", {"version": "2"}) == 1
    assert worker.metrics.value("shopsentry_model_version_info", {"version": "1"}) == 0


def test_latency_samples_are_written_for_benchmarks(tmp_path: Path) -> None:
    log = MemoryLog(PARTS)
    feed(log, users=2, per_user=3)
    path = tmp_path / "lat.npy"
    worker = make_worker(tmp_path, log, FakeScorer(), latency_samples=path)
    worker.run()
    samples = np.load(path)
    assert samples.shape == (6,) and (samples >= 0).all()


def test_after_a_restore_the_ledger_s_purchases_keep_the_decision_already_on_the_log(
    tmp_path: Path,
) -> None:
    """The worker reads the restore's ledger it is handed when it starts: a purchase the
    ledger names is decided again (its features count) but emits no second decision."""
    log = MemoryLog(PARTS)
    feed(log)
    store = LmdbStateStore(tmp_path / "state.lmdb")
    holder = ModelHolder(FakeScorer, lambda: "1", interval_s=60)
    on_the_log = {"p-u0-0", "p-u3-1"}
    ledger = Ledger(set(on_the_log), {p: 100 for p in range(PARTS[PT])})
    worker = Worker(
        worker_config(),
        log,
        store,
        holder,
        FakeOps(),
        WorkerOptions(exit_when_idle_s=0.0),
        replay_ledger=lambda: ledger,
    )
    summary = worker.run()
    assert summary.purchases == 20
    expected = {f"p-u{u}-{n}" for u in range(5) for n in range(4)} - on_the_log
    assert sorted(decision_ids(log)) == sorted(expected)
    assert purchase_counts(store) == {f"u{u}": 4 for u in range(5)}
    assert worker.metrics.value("shopsentry_replayed_decisions_kept_total") == 2


def test_max_events_stops_the_worker(tmp_path: Path) -> None:
    log = MemoryLog(PARTS)
    feed(log)
    worker = make_worker(tmp_path, log, FakeScorer(), max_events=5)
    worker.config = worker_config(batch_max_records=5)
    summary = worker.run()
    assert summary.records == 5
    assert (
        sum(
            log.committed.get(("fraud-detector", TopicPartition(t, p)), 0)
            for t in (PT, BT)
            for p in range(PARTS[t])
        )
        == 5
    )


def test_written_states_are_cached_between_batches_and_dropped_on_rebalance(
    tmp_path: Path,
) -> None:
    log = MemoryLog(PARTS)
    feed(log, users=2, per_user=3)
    worker = make_worker(tmp_path, log, FakeScorer())
    worker.config = worker_config(batch_max_records=4)
    loads: list[tuple[str, list[str]]] = []
    original = worker.store.load

    def load(namespace, keys):  # type: ignore[no-untyped-def]
        loads.append((namespace, list(keys)))
        return original(namespace, keys)

    worker.store.load = load  # type: ignore[method-assign]
    worker.run()
    loaded_purchase_users = [u for ns, keys in loads if ns == PURCHASE_NS for u in keys]
    # Each user's purchase state came from the store once; later batches used the cache.
    assert sorted(loaded_purchase_users) == ["u0", "u1"]
    assert purchase_counts(worker.store) == {"u0": 3, "u1": 3}
    assert len(worker.cache) == 0  # closing revoked the partitions


def test_read_only_behaviour_states_are_cached_only_when_this_worker_owns_them(
    tmp_path: Path,
) -> None:
    log = MemoryLog(PARTS)
    for n in range(3):
        for u in range(2):
            log.append(PT, encode(purchase(n, f"u{u}")), f"u{u}".encode())
    worker = make_worker(tmp_path, log, FakeScorer())
    worker.config = worker_config(batch_max_records=2)
    loads: list[str] = []
    original = worker.store.load

    def load(namespace, keys):  # type: ignore[no-untyped-def]
        loads.extend(f"{namespace}:{k}" for k in keys)
        return original(namespace, keys)

    worker.store.load = load  # type: ignore[method-assign]
    worker.run()  # owns every partition: one behaviour read per user
    assert sorted(x for x in loads if x.startswith("behavior")) == ["behavior:u0", "behavior:u1"]

    log2 = MemoryLog(PARTS)
    for n in range(3):
        log2.append(PT, encode(purchase(n, "u0")), b"u0")
    other = make_worker(tmp_path / "b", log2, FakeScorer())
    other.config = worker_config(batch_max_records=1)
    loads.clear()
    other.store.load = lambda ns, keys: (loads.extend(f"{ns}:{k}" for k in keys), {})[1]  # type: ignore[method-assign]
    other.pipeline.owns_behavior = lambda user: False
    other.run()  # behaviour owned elsewhere: read from the store every batch
    assert [x for x in loads if x.startswith("behavior")] == ["behavior:u0"] * 3


def test_a_save_after_another_worker_took_the_partitions_is_fenced_out(tmp_path: Path) -> None:
    """A worker that lost its partitions without noticing finishes a batch after the new
    owner applied records of them: its save is refused, writes nothing, and it skips
    what the new owner applied from then on."""
    log = MemoryLog(PARTS)
    feed(log)
    worker = make_worker(tmp_path, log, FakeScorer())
    worker.config = as_polled()  # the first batch is everything
    store = worker.store
    new_owner_state = {"purchases": 99, "events": ["elsewhere"]}
    everything = {
        TopicPartition(t, p): len(log.data[t][p]) - 1
        for t in (PT, BT)
        for p in range(PARTS[t])
        if log.data[t][p]
    }
    process = worker.pipeline.process
    calls = []

    def process_after_a_takeover(*args: object) -> object:
        if not calls:  # the new owner applies every record while this batch runs
            store.save({PURCHASE_NS: {"u0": json.dumps(new_owner_state).encode()}}, everything)
            # ... and a later purchase arrives, which this worker reads next.
            log.append(PT, encode(purchase(9, "u0", amount=10.0)), b"u0")
        calls.append(1)
        return process(*args)  # type: ignore[arg-type]

    worker.pipeline.process = process_after_a_takeover  # type: ignore[method-assign]
    worker.options.max_events = None
    summary = worker.run()
    assert summary.fenced == 1 and summary.batches == 2 and summary.records == 41
    # Nothing of the fenced batch landed; the later purchase counts on the new owner's state.
    assert purchase_counts(store) == {"u0": 100}
    assert json.loads(store.load(PURCHASE_NS, ["u0"])["u0"])["events"] == ["elsewhere", "p-u0-9"]
    # The fenced batch's decisions never went out: only the later purchase's did.
    assert decision_ids(log) == ["p-u0-9"]
    # Only the later purchase's offset was committed, not the fenced batch's.
    assert {tp.topic for (_, tp) in log.committed} == {PT}


def test_an_unavailable_store_or_cluster_degrades_the_worker_it_never_exits(
    tmp_path: Path,
) -> None:
    """Fault 4: the state store refuses twice and the cluster acknowledges nothing once;
    the worker backs off, says it is degraded, and carries on to one decision each."""
    from shopsentry.errors import ProduceError, StateUnavailable
    from shopsentry.stream.checkpoint import Backoff

    log = MemoryLog(PARTS)
    feed(log, users=3, per_user=2)
    worker = make_worker(tmp_path, log, FakeScorer())
    failures: list[Exception] = [StateUnavailable("redis away"), StateUnavailable("still away")]
    original_save = worker.store.save

    def save(*args, **kw):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop(0)
        original_save(*args, **kw)

    worker.store.save = save  # type: ignore[method-assign]
    make_producer = log.producer
    unacked = [ProduceError("6 record(s) not acknowledged within 30s", failed=6)]

    def producer():  # type: ignore[no-untyped-def]
        p = make_producer()
        flush = p.flush

        def flaky_flush(timeout: float = 30.0) -> None:
            if unacked:
                p.pending.clear()
                raise unacked.pop()
            flush(timeout)

        p.flush = flaky_flush  # type: ignore[method-assign]
        return p

    log.producer = producer  # type: ignore[method-assign]
    config = worker.runtime_config

    def fast_backoff():  # type: ignore[no-untyped-def]
        cfg = config()
        object.__setattr__(cfg, "backoff", Backoff(initial_s=0.0, max_s=0.0))
        return cfg

    worker.runtime_config = fast_backoff  # type: ignore[method-assign]
    seen: list[float] = []
    on_error = worker.handler.reset

    def reset() -> None:  # called after each failed attempt, while degraded
        seen.append(worker.metrics.value("shopsentry_degraded"))
        on_error()

    worker.handler.reset = reset  # type: ignore[method-assign]
    summary = worker.run()
    assert summary.errors == 3 and summary.purchases == 6
    assert sorted(decision_ids(log)) == sorted(f"p-u{u}-{n}" for u in range(3) for n in range(2))
    assert seen == [0.0, 1.0]  # degraded from the first failure on ...
    assert worker.metrics.value("shopsentry_degraded") == 0.0  # ... and recovered
    assert (
        worker.metrics.value("shopsentry_stream_errors_total", {"error": "StateUnavailable"}) == 2
    )
    assert worker.metrics.value("shopsentry_stream_errors_total", {"error": "ProduceError"}) == 1


def test_a_challenger_set_and_cleared_mid_run_is_scored_only_while_it_exists(
    tmp_path: Path,
) -> None:
    log = MemoryLog(PARTS)
    feed(log, users=3, per_user=3)
    worker = make_worker(tmp_path, log, FakeScorer(version="1"))
    worker.config = worker_config(batch_max_records=3)
    alias: dict[str, str | None] = {"v": None}
    worker.handler.challenger = ModelHolder(
        lambda: FakeScorer(version=alias["v"] or "?"),
        lambda: alias["v"],
        interval_s=60,
        optional=True,
    )
    original = worker.handler.saved
    saved = {"n": 0}

    def after_save(result):  # type: ignore[no-untyped-def]
        original(result)
        saved["n"] += 1
        if saved["n"] in (2, 4):
            alias["v"] = "7" if saved["n"] == 2 else None
            worker.handler.challenger.check_once()  # type: ignore[union-attr]

    worker.handler.saved = after_save  # type: ignore[method-assign]
    worker.run()
    ds = [DECISION.validate_json(r.value) for r in log.records("decisions")]
    shadowed = [d.challenger_version for d in ds]
    assert len(ds) == 9 and set(shadowed) == {None, "7"}
    assert all(d.served_by == "champion" and d.model_version == "1" for d in ds)
    assert shadowed.count("7") == worker.metrics.value("shopsentry_challenger_scored_total") > 0
    assert worker.metrics.value("shopsentry_challenger_version_info", {"version": "7"}) == 0
