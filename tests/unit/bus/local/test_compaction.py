"""Compaction of the embedded log: a compacted topic keeps the latest record of each key
with its offset, as Kafka does, and consumers read across the gaps it leaves."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsentry.bus.base import Record, TopicPartition, TopicSpec
from shopsentry.bus.local import LocalLog
from shopsentry.bus.local.sqlite import DB_NAME

KEYS = 5


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LocalLog]:
    log = LocalLog(tmp_path / "log", session_timeout_ms=1000)
    log.create_topics([
        TopicSpec("control", 1, retention_ms=60_000, cleanup_policy="compact"),
        TopicSpec("events", 1, retention_ms=-1),
    ])  # fmt: skip
    yield log
    log.close()


def send(log: LocalLog, topic: str, n: int, *, start: int = 0, **options: int) -> None:
    """``n`` records, keys ``k0``..``k4`` in turn, values their send number; two flushes
    so the records span several batches."""
    with log.producer(retention_check_ms=10**13, **options) as producer:
        for i in range(start, start + n):
            producer.send(
                topic, f"v{i}".encode(), f"k{i % KEYS}".encode(), headers=[("n", b"%d" % i)],
                timestamp_ms=1_700_000_000_000 + i,
            )  # fmt: skip
            if i == start + n // 2:
                producer.flush()


def read_all(log: LocalLog, topic: str) -> list[Record]:
    consumer = log.consumer(None, [topic])
    out: list[Record] = []
    try:
        while batch := consumer.poll(max_records=7, timeout=0.2):
            out += batch
    finally:
        consumer.close()
    return out


def test_compaction_keeps_the_latest_record_of_each_key_at_its_offset(log: LocalLog) -> None:
    send(log, "control", 23)
    send(log, "events", 23)
    before = read_all(log, "control")
    assert [r.offset for r in before] == list(range(23))

    assert log.compact() == 23 - KEYS
    after = read_all(log, "control")
    latest = {r.key: r for r in before}  # the last record of each key
    assert after == sorted(latest.values(), key=lambda r: r.offset)
    assert [r.offset for r in after] == [18, 19, 20, 21, 22]
    oldest = after[0]
    assert (oldest.value, oldest.header("n"), oldest.timestamp_ms) == (
        b"v18",
        b"18",
        1_700_000_000_018,
    )
    info = log.describe_topic("control")
    assert info.config["cleanup.policy"] == "compact"
    assert (info.partitions[0].start_offset, info.partitions[0].end_offset) == (0, 23)
    # A delete-policy topic is never compacted; compacting again removes nothing.
    assert len(read_all(log, "events")) == 23
    assert log.describe_topic("events").config["cleanup.policy"] == "delete"
    assert log.compact() == 0


def test_readers_go_on_across_the_gaps(log: LocalLog) -> None:
    send(log, "control", 10)  # k0..k4 twice: offsets 5..9 survive
    tp = TopicPartition("control", 0)
    midway = log.consumer(None, ["control"])
    first = midway.poll(max_records=2, timeout=1.0)
    assert [r.offset for r in first] == [0, 1]
    midway.seek(tp, 2)  # forget what it fetched ahead: the next read is from the table
    group = log.consumer("g", ["control"])
    assert len(group.poll(max_records=3, timeout=1.0)) == 3
    group.commit()  # committed 3: a gap once compacted
    group.close()
    log.compact()
    send(log, "control", 3, start=10)  # k0, k1, k2 again: offsets 10..12
    rest: list[Record] = []
    while batch := midway.poll(max_records=100, timeout=0.2):
        rest += batch
    # Kafka's view: from a position in a gap, the next kept record on.
    assert [r.offset for r in rest] == [5, 6, 7, 8, 9, 10, 11, 12]
    midway.seek(tp, 3)
    assert [r.offset for r in midway.poll(max_records=1, timeout=1.0)] == [5]
    midway.close()
    resumed = log.consumer("g", ["control"])
    offsets: list[int] = []
    while batch := resumed.poll(max_records=100, timeout=0.5):
        offsets += [r.offset for r in batch]
    resumed.close()
    assert offsets == [5, 6, 7, 8, 9, 10, 11, 12]


def test_producers_compact_at_their_retention_check_once_enough_changed(log: LocalLog) -> None:
    send(log, "control", 10)
    with log.producer(retention_check_ms=0) as producer:  # checks at every flush
        producer.send("control", b"v10", b"k0")
        producer.flush()
    # Records far older than the topic's retention_ms stay: compaction, not deletion.
    kept = read_all(log, "control")
    assert [r.offset for r in kept] == [6, 7, 8, 9, 10]
    # One more change is not enough to be worth a pass (dirty 1 of 6 records) ...
    with log.producer(retention_check_ms=0) as producer:
        producer.send("control", b"v11", b"k1")
        producer.flush()
    assert len(read_all(log, "control")) == 6
    # ... six more are (7 dirty of 12).
    send(log, "control", 5, start=12)
    with log.producer(retention_check_ms=0) as producer:
        producer.send("control", b"v17", b"k2")
        producer.flush()
    assert [r.value for r in read_all(log, "control")] == [b"v13", b"v14", b"v15", b"v16", b"v17"]


def test_keyless_records_are_kept(log: LocalLog) -> None:
    with log.producer() as producer:
        for i in range(4):
            producer.send("control", b"same-key", b"k")
            producer.send("control", b"no-key-%d" % i)
    assert log.compact() == 3
    values = [r.value for r in read_all(log, "control")]
    assert values == [b"no-key-0", b"no-key-1", b"no-key-2", b"same-key", b"no-key-3"]


def test_a_log_from_before_compaction_gets_its_columns(tmp_path: Path) -> None:
    LocalLog(tmp_path / "old").close()
    db = sqlite3.connect(tmp_path / "old" / DB_NAME)
    db.execute("ALTER TABLE topics DROP COLUMN cleanup_policy")
    db.execute("ALTER TABLE partitions DROP COLUMN clean_offset")
    db.close()
    with LocalLog(tmp_path / "old") as log:
        log.create_topics([TopicSpec("control", 1, cleanup_policy="compact")])
        assert log.describe_topic("control").config["cleanup.policy"] == "compact"


def test_an_unknown_cleanup_policy_is_refused(log: LocalLog) -> None:
    with pytest.raises(ValueError, match="cleanup_policy"):
        log.create_topics([TopicSpec("odd", 1, cleanup_policy="shred")])
