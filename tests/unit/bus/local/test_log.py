"""The embedded log behaves like Kafka where the rest of shopsentry depends on it:
per-partition order, key placement, group offsets, rebalancing, fencing, seeking,
retention and clean errors."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.bus.base import Record, TopicPartition, TopicSpec
from shopsentry.bus.local import LocalConsumer, LocalLog, LogBusy, LogStoreError
from shopsentry.bus.partitioner import partition_for
from shopsentry.config import Settings
from shopsentry.errors import BusError, CommitFailed, ShopsentryError, UnknownTopic

SESSION_MS = 1000


@pytest.fixture
def log(tmp_path: Path) -> LocalLog:
    log = LocalLog(tmp_path / "log", session_timeout_ms=SESSION_MS)
    log.create_topics([TopicSpec("orders", 3), TopicSpec("one", 1)])
    yield log
    log.close()


def produce(log: LocalLog, topic: str, n: int, *, start: int = 0, users: int = 20) -> None:
    with log.producer() as producer:
        for i in range(start, start + n):
            producer.send(topic, f"{i}".encode(), key=f"user-{i % users}".encode())


def poll_until(consumers: list[LocalConsumer], stop, deadline_s: float = 10.0) -> None:
    """Poll (taking no records, so positions stay put) until ``stop()`` holds."""
    deadline = time.monotonic() + deadline_s
    while not stop():
        assert time.monotonic() < deadline, "condition not reached in time"
        for c in consumers:
            c.poll(0, 0.01)


def test_per_partition_order_and_key_placement(log: LocalLog) -> None:
    produce(log, "orders", 3000)
    consumer = log.consumer(None, ["orders"])
    records: list[Record] = []
    while len(records) < 3000:
        batch = consumer.poll(700, 2.0)
        assert batch, "records missing"
        records += batch
    assert sorted(int(r.value) for r in records) == list(range(3000))
    by_partition: dict[int, list[Record]] = {}
    for r in records:
        assert r.partition == partition_for(r.key, 3)
        by_partition.setdefault(r.partition, []).append(r)
    for partition, rs in by_partition.items():
        assert [r.offset for r in rs] == list(range(len(rs))), partition
    # Per key, values (the send order) come back in order.
    for user in {r.key for r in records}:
        values = [int(r.value) for r in records if r.key == user]
        assert values == sorted(values)
    info = log.describe_topic("orders")
    assert sum(p.end_offset for p in info.partitions) == 3000
    assert all(p.start_offset == 0 for p in info.partitions)
    consumer.close()


def test_keyless_records_and_explicit_partitions(log: LocalLog) -> None:
    with log.producer() as producer:
        for i in range(10):
            producer.send("orders", b"k%d" % i)
        stamp = int(time.time() * 1000) - 1000
        producer.send(
            "orders", b"here", partition=2, headers=[("dlq.reason", b"x")], timestamp_ms=stamp
        )
        with pytest.raises(BusError, match="no partition 3"):
            producer.send("orders", b"nowhere", partition=3)
    consumer = log.consumer(None, ["orders"])
    records = consumer.poll(100, 1.0)
    records += consumer.poll(100, 0.2)
    assert len(records) == 11
    pinned = [r for r in records if r.value == b"here"]
    assert pinned[0].partition == 2 and pinned[0].timestamp_ms == stamp
    assert pinned[0].header("dlq.reason") == b"x"
    assert all(r.key is None for r in records)


def test_group_offsets_survive_restart(log: LocalLog, tmp_path: Path) -> None:
    produce(log, "orders", 300)
    first = log.consumer("loader", ["orders"])
    seen = []
    while len(seen) < 120:
        seen += first.poll(40, 1.0)
    first.commit()
    positions = {tp: first.position(tp) for tp in first.assignment()}
    first.close()
    # A new process (new LocalLog on the same dir) resumes where the group committed.
    reopened = LocalLog(tmp_path / "log", session_timeout_ms=SESSION_MS)
    second = reopened.consumer("loader", ["orders"])
    rest = []
    while len(seen) + len(rest) < 300:
        batch = second.poll(500, 2.0)
        assert batch
        rest += batch
    assert sorted(int(r.value) for r in seen + rest) == list(range(300))
    assert second.committed(sorted(positions)) == positions
    lag = {(p.topic, p.partition): p.lag for p in reopened.group_lag("loader")}
    assert sum(lag.values()) == 300 - len(seen)
    second.commit()
    assert all(p.lag == 0 for p in reopened.group_lag("loader"))
    assert reopened.list_groups() == ["loader"]
    second.close()
    reopened.close()


def test_two_consumers_split_three_partitions_two_and_one(log: LocalLog) -> None:
    a = log.consumer("detector", ["orders"], client_id="a")
    b = log.consumer("detector", ["orders"], client_id="b")
    poll_until([a, b], lambda: len(a.assignment()) + len(b.assignment()) == 3)
    assert sorted([len(a.assignment()), len(b.assignment())]) == [1, 2]
    assert a.assignment().isdisjoint(b.assignment())
    members = log.group_members("detector")
    assert sorted(len(tps) for tps in members.values()) == [1, 2]
    a.close()
    b.close()


def test_rebalance_on_join_and_leave_loses_and_repeats_nothing(log: LocalLog) -> None:
    """Workers commit after each poll and in on_revoke, as the detector does: across a
    join and two leaves every record is processed exactly once."""
    processed: Counter[int] = Counter()
    events: list[tuple[str, str, list[TopicPartition]]] = []

    def worker(name: str) -> LocalConsumer:
        holder: dict[str, LocalConsumer] = {}

        def on_revoke(tps: list[TopicPartition]) -> None:
            events.append((name, "revoke", list(tps)))
            holder["c"].commit()

        def on_assign(tps: list[TopicPartition]) -> None:
            events.append((name, "assign", list(tps)))

        holder["c"] = log.consumer(
            "g", ["orders"], client_id=name, on_revoke=on_revoke, on_assign=on_assign
        )
        return holder["c"]

    def step(c: LocalConsumer) -> None:
        batch = c.poll(25, 0.01)
        processed.update(int(r.value) for r in batch)
        if batch:
            c.commit()

    produce(log, "orders", 600)
    a = worker("a")
    for _ in range(4):
        step(a)
    b = worker("b")
    deadline = time.monotonic() + 10
    while len(b.assignment()) == 0:
        assert time.monotonic() < deadline
        step(a)
        step(b)
    assert sorted([len(a.assignment()), len(b.assignment())]) == [1, 2]
    produce(log, "orders", 300, start=600)
    c = worker("c")
    while len(c.assignment()) == 0:
        assert time.monotonic() < deadline
        for w in (a, b, c):
            step(w)
    assert [len(w.assignment()) for w in (a, b, c)] == [1, 1, 1]
    a.close()  # leaves: its partition moves on, after its on_revoke committed
    while len(b.assignment()) + len(c.assignment()) < 3:
        assert time.monotonic() < deadline
        step(b)
        step(c)
    while sum(processed.values()) < 900:
        assert time.monotonic() < deadline
        step(b)
        step(c)
    b.close()
    for _ in range(5):
        step(c)
    assert len(c.assignment()) == 3
    assert sorted(processed) == list(range(900))
    assert max(processed.values()) == 1, "a record was processed twice"
    assert any(name == "a" and kind == "revoke" for name, kind, _ in events)
    assert any(name == "c" and kind == "assign" for name, kind, _ in events)
    c.close()


def test_commit_is_fenced_after_the_partition_moved(log: LocalLog) -> None:
    produce(log, "one", 10)
    a = log.consumer("g", ["one"], client_id="a")
    assert len(a.poll(5, 1.0)) == 5
    a.commit()
    # Simulate a hung process: its heartbeats stop, its session expires.
    a._stop.set()
    assert a._heartbeat_thread is not None
    a._heartbeat_thread.join()
    time.sleep(SESSION_MS / 1000 + 0.2)
    b = log.consumer("g", ["one"], client_id="b")
    poll_until([b], lambda: len(b.assignment()) == 1)
    tp = TopicPartition("one", 0)
    assert b.position(tp) == 5  # resumes at a's commit
    with pytest.raises(CommitFailed, match="reassigned"):
        a.commit({tp: 9})
    assert b.committed([tp]) == {tp: 5}
    # The stale member notices on its next poll: partitions lost, it rejoins empty-handed.
    revoked: list[TopicPartition] = []
    a._on_revoke = revoked.extend
    a.poll(5, 0.05)
    assert revoked == [tp]
    assert a.assignment() == frozenset()
    b.close()
    a.close()


def test_dead_member_partitions_move_after_session_timeout(log: LocalLog) -> None:
    a = log.consumer("g", ["orders"], client_id="a")
    b = log.consumer("g", ["orders"], client_id="b")
    poll_until([a, b], lambda: len(a.assignment()) + len(b.assignment()) == 3)
    a._stop.set()  # a stops heartbeating and polling (as after kill -9)
    poll_until([b], lambda: len(b.assignment()) == 3, deadline_s=SESSION_MS / 1000 + 5)
    assert len(log.group_members("g")) == 1
    b.close()


def test_seek_and_seek_to_timestamp(log: LocalLog) -> None:
    with log.producer() as producer:
        for i in range(100):
            producer.send("one", b"%d" % i, key=b"k", timestamp_ms=1_000 + i * 10)
            if i % 7 == 0:
                producer.flush()  # several batches
    consumer = log.consumer("replayer", ["one"])
    tp = TopicPartition("one", 0)
    poll_until([consumer], lambda: consumer.assignment() == {tp})
    consumer.seek(tp, 42)
    assert [r.offset for r in consumer.poll(3, 1.0)] == [42, 43, 44]
    consumer.seek_to_timestamp(1_000 + 70 * 10 - 5)  # between records 69 and 70
    assert consumer.poll(1, 1.0)[0].offset == 70
    consumer.seek_to_timestamp(1_000 + 13 * 10)
    assert consumer.poll(1, 1.0)[0].value == b"13"
    consumer.seek_to_timestamp(10**13)
    assert consumer.position(tp) == 100 and consumer.poll(10, 0.05) == []
    with pytest.raises(BusError, match="not assigned"):
        consumer.seek(TopicPartition("orders", 0), 0)
    consumer.close()


def test_retention_deletes_whole_old_batches(log: LocalLog) -> None:
    log.create_topics([TopicSpec("short", 1, retention_ms=60_000)])
    now = int(time.time() * 1000)
    with log.producer(retention_check_ms=10**13) as producer:  # no check while producing
        for i in range(50):
            producer.send("short", b"old%d" % i, timestamp_ms=now - 3_600_000)
        producer.flush()
        for i in range(20):
            producer.send("short", b"new%d" % i, timestamp_ms=now)
    assert log.describe_topic("short").config["retention.ms"] == "60000"
    assert log.apply_retention() == 50
    (part,) = log.describe_topic("short").partitions
    assert (part.start_offset, part.end_offset) == (50, 70)
    consumer = log.consumer("late", ["short"])
    records = consumer.poll(100, 1.0)
    assert [r.offset for r in records] == list(range(50, 70))
    assert records[0].value == b"new0"
    consumer.close()
    # Producers apply retention on their own (every retention_check_ms, default a
    # minute); as in Kafka only a prefix goes: an old batch behind a recent one waits.
    with log.producer(retention_check_ms=0) as producer:
        producer.send("short", b"ancient", timestamp_ms=now - 3_600_000)
    (part,) = log.describe_topic("short").partitions
    assert (part.start_offset, part.end_offset) == (50, 71)
    log.create_topics([TopicSpec("short2", 1, retention_ms=60_000)])
    with log.producer(retention_check_ms=10**13) as producer:
        producer.send("short2", b"ancient", timestamp_ms=now - 3_600_000)
    with log.producer(retention_check_ms=0) as producer:
        producer.send("short2", b"fresh")
    (part,) = log.describe_topic("short2").partitions
    assert (part.start_offset, part.end_offset) == (1, 2)


def test_latest_reset_reads_only_new_records(log: LocalLog) -> None:
    produce(log, "one", 5)
    consumer = log.consumer("tail", ["one"], auto_offset_reset="latest")
    poll_until([consumer], lambda: len(consumer.assignment()) == 1)
    produce(log, "one", 2, start=5)
    assert [r.value for r in consumer.poll(10, 1.0)] == [b"5", b"6"]
    consumer.close()


def test_an_idle_consumer_skips_the_fetch_queries_until_someone_writes(log: LocalLog) -> None:
    """While no other connection has committed, a poll costs one pragma, not a query per
    partition; a record written then is read at the next look. (No group: a member's
    heartbeats are writes too, which end the quiet.)"""
    produce(log, "orders", 10)
    consumer = log.consumer(None, ["orders"])
    assert len(consumer.poll(100, 1.0)) == 10
    statements: list[str] = []
    consumer._conn.set_trace_callback(statements.append)
    assert consumer.poll(100, 0.0) == []  # an empty fetch: it queried the partitions
    assert any("FROM partitions" in s for s in statements)
    statements.clear()
    assert consumer.poll(100, 0.2) == []  # nobody wrote: many looks, no fetch
    assert statements and all(s == "PRAGMA data_version" for s in statements)
    produce(log, "orders", 1, start=10)
    got = consumer.poll(100, 5.0)
    assert [r.value for r in got] == [b"10"]
    consumer.close()


def test_a_poll_reads_only_the_partitions_with_new_records(log: LocalLog) -> None:
    """One query finds which partitions moved; only those are read (a low-rate flush
    touches few partitions, and a poll need not query the others)."""
    produce(log, "orders", 30)
    consumer = log.consumer(None, ["orders"])
    assert len(consumer.poll(100, 1.0)) == 30
    statements: list[str] = []
    consumer._conn.set_trace_callback(statements.append)
    with log.producer() as producer:
        producer.send("orders", b"late", key=b"user-1")
    got = consumer.poll(100, 5.0)
    assert [r.value for r in got] == [b"late"]
    reads = [s for s in statements if "FROM batches" in s]
    assert len(reads) == 1, statements  # the one partition that moved, of three
    consumer.close()


def test_one_flush_over_many_partitions_keeps_each_partitions_offsets(log: LocalLog) -> None:
    """A flush writes every partition it touches in one transaction of three statements;
    each partition's offsets still run on from its own end."""
    produce(log, "orders", 9)
    statements: list[str] = []
    with log.producer() as producer:
        producer._conn.set_trace_callback(statements.append)
        for i in range(9, 21):
            producer.send("orders", f"{i}".encode(), key=f"user-{i % 20}".encode())
        producer.flush()
        writes = [s for s in statements if s.startswith(("INSERT", "UPDATE", "SELECT"))]
        producer._conn.set_trace_callback(None)
    consumer = log.consumer(None, ["orders"])
    got = consumer.poll(100, 1.0)
    assert sorted(int(r.value) for r in got) == list(range(21))
    for partition in range(3):
        offsets = [r.offset for r in got if r.partition == partition]
        assert offsets == list(range(len(offsets)))  # no gap, no overlap
    assert len({r.partition for r in got if int(r.value) >= 9}) == 3
    assert sum("end_offset FROM partitions" in s for s in writes) == 1, writes
    assert sum(s.startswith("INSERT INTO batches") for s in writes) == 3  # one per partition
    consumer.close()


def test_a_new_log_has_16k_pages_and_an_older_64k_log_keeps_working(tmp_path: Path) -> None:
    """Small pages keep a low-rate commit small; a log created by an earlier version
    (64 KiB pages) keeps its pages, and is read and written as before."""
    fresh = LocalLog(tmp_path / "new")
    fresh.create_topics([TopicSpec("orders", 3)])
    produce(fresh, "orders", 5)
    fresh.close()
    conn = sqlite3.connect(tmp_path / "new" / "log.sqlite")
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
    conn.close()
    (tmp_path / "old").mkdir()
    old_file = tmp_path / "old" / "log.sqlite"
    conn = sqlite3.connect(old_file)
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE placeholder (x)")  # the file now exists with 64 KiB pages
    conn.close()
    old = LocalLog(tmp_path / "old")
    old.create_topics([TopicSpec("orders", 3)])
    produce(old, "orders", 40)
    consumer = old.consumer(None, ["orders"])
    assert sorted(int(r.value) for r in consumer.poll(100, 1.0)) == list(range(40))
    consumer.close()
    old.close()
    conn = sqlite3.connect(old_file)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 65536
    conn.close()


def test_unknown_topic_and_groupless_commit_errors(log: LocalLog) -> None:
    with pytest.raises(UnknownTopic):
        log.consumer("g", ["nope"])
    with pytest.raises(UnknownTopic):
        log.describe_topic("nope")
    producer = log.producer()
    with pytest.raises(UnknownTopic) as info:
        producer.send("nope", b"x")
    assert "shopsentry topics create" in info.value.one_line()
    producer.close()
    consumer = log.consumer(None, ["one"])
    with pytest.raises(BusError, match="without a group"):
        consumer.commit()
    consumer.close()


def test_corrupt_database_gives_one_line_error(tmp_path: Path) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "log.sqlite").write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(LogStoreError) as info:
        LocalLog(directory)
    assert isinstance(info.value, ShopsentryError)
    assert "\n" not in info.value.one_line() and "not a database" in info.value.one_line()


def test_locked_database_gives_transient_error(
    log: LocalLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopsentry.bus.local import sqlite as log_file

    monkeypatch.setattr(log_file, "BUSY_TIMEOUT_S", 0.1)
    blocker = sqlite3.connect(log.directory / "log.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(LogBusy) as info:
            LocalLog(log.directory)
        assert info.value.retryable
        assert "locked" in info.value.one_line() and "\n" not in info.value.one_line()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_open_log_creates_configured_topics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_session_timeout_ms=700)
    log = open_log(BusConfig.from_settings(settings))
    assert isinstance(log, LocalLog)
    assert log.session_timeout_ms == 700
    assert {"purchase-events", "user-behavior", "fraud-alerts"} <= set(log.list_topics())
    assert len(log.describe_topic("purchase-events").partitions) == 3
    log.close()


def test_producer_shared_by_threads_keeps_every_record_in_order(log: LocalLog) -> None:
    """Four threads send through one producer while its background flusher (linger 1 ms)
    and explicit flushes race them: nothing is lost and each thread's order per key holds."""
    producer = log.producer(linger_ms=1, batch_records=50)

    def work(t: int) -> None:
        for i in range(2_000):
            producer.send("orders", f"{t}:{i}".encode(), key=f"thread-{t}".encode())
            if i % 333 == 0:
                producer.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    producer.close()
    consumer = log.consumer(None, ["orders"])
    records = drain_all(consumer, 8_000)
    consumer.close()
    by_thread: dict[str, list[int]] = {}
    for r in records:
        t, i = r.value.decode().split(":")
        by_thread.setdefault(t, []).append(int(i))
    assert {t: seq for t, seq in by_thread.items()} == {
        str(t): list(range(2_000)) for t in range(4)
    }
    # Meanwhile admin calls from several threads share the log's one connection safely.
    errors: list[BaseException] = []

    def describe() -> None:
        try:
            for _ in range(50):
                assert sum(p.end_offset for p in log.describe_topic("orders").partitions) == 8_000
        except BaseException as exc:
            errors.append(exc)

    admins = [threading.Thread(target=describe) for _ in range(4)]
    for th in admins:
        th.start()
    for th in admins:
        th.join()
    assert errors == []


def drain_all(consumer: LocalConsumer, expected: int) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + 10
    while len(records) < expected:
        assert time.monotonic() < deadline, f"only {len(records)} of {expected}"
        records += consumer.poll(1_000, 0.5)
    return records


def test_fsync_always_acknowledges_each_send(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "always", fsync="always")
    log.create_topics([TopicSpec("one", 1)])
    producer = log.producer(linger_ms=60_000)  # no background flush could explain it
    producer.send("one", b"durable", key=b"k")
    (part,) = log.describe_topic("one").partitions
    assert part.end_offset == 1  # committed by send itself
    producer.close()
    log.close()


def test_bad_values_are_refused_at_send(log: LocalLog) -> None:
    producer = log.producer()
    with pytest.raises(TypeError, match="bytes"):
        producer.send("one", "not bytes")  # type: ignore[arg-type]
    producer.close()
    with pytest.raises(BusError, match="closed"):
        producer.send("one", b"late")


def test_damaged_batch_is_a_one_line_error(log: LocalLog) -> None:
    produce(log, "one", 3)
    damage = sqlite3.connect(log.directory / "log.sqlite", isolation_level=None)
    damage.execute("UPDATE batches SET payload = x'01ff'")
    damage.close()
    consumer = log.consumer(None, ["one"])
    with pytest.raises(LogStoreError) as info:
        consumer.poll(10, 0.5)
    assert "one[0] at offset 0 is damaged" in info.value.one_line()
    assert "\n" not in info.value.one_line()
    consumer.close()
