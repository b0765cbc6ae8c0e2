"""One contract, two backends: the embedded log and real Apache Kafka must behave the
same wherever shopsentry relies on it (issue 3, item 3).

Each test builds its backend through ``open_log(BusConfig.from_settings(Settings(...)))``,
exactly as the application does, and uses fresh topic and group names, so the Kafka tests
can share one broker. Session timeouts are short (the local log: 1 s; Kafka: 6 s, the broker's
minimum) so a crashed consumer is replaced within seconds.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.bus.base import Consumer, EventLog, Record, TopicPartition, TopicSpec
from shopsentry.bus.partitioner import partition_for
from shopsentry.config import KafkaSettings, Settings

pytestmark = pytest.mark.integration

LOCAL_SESSION_MS = 1_000
KAFKA_SESSION_MS = 6_000


@dataclass
class Backend:
    name: str
    settings: Settings
    log: EventLog

    @property
    def session_s(self) -> float:
        return (LOCAL_SESSION_MS if self.name == "local" else KAFKA_SESSION_MS) / 1000

    def reopen(self) -> EventLog:
        """A second handle on the same log, as another process would open it."""
        return open_log(BusConfig.from_settings(self.settings), create_topics=False)

    def topic(
        self,
        partitions: int = 3,
        retention_ms: int = 7 * 86_400_000,
        cleanup_policy: str = "delete",
    ) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        self.log.create_topics(
            [
                TopicSpec(
                    name,
                    partitions,
                    replication_factor=1,
                    retention_ms=retention_ms,
                    min_insync_replicas=1,
                    cleanup_policy=cleanup_policy,
                )
            ]
        )
        return name


def _settings(name: str, data_dir: Path, bootstrap: str | None) -> Settings:
    if name == "local":
        return Settings(data_dir=data_dir, log_session_timeout_ms=LOCAL_SESSION_MS)
    return Settings(
        data_dir=data_dir,
        bus=f"kafka://{bootstrap}",
        kafka=KafkaSettings(session_timeout_ms=KAFKA_SESSION_MS, connect_timeout_s=10),
    )


@pytest.fixture(params=["local", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    settings = _settings(request.param, tmp_path / "data", bootstrap)
    log = open_log(BusConfig.from_settings(settings), create_topics=False)
    yield Backend(request.param, settings, log)
    log.close()


def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


def produce(log: EventLog, topic: str, items: list[tuple[bytes | None, bytes]], **kw: int) -> None:
    producer = log.producer()
    for key, value in items:
        producer.send(topic, value, key=key, **kw)
    producer.flush()
    producer.close()


def drain(
    consumer: Consumer, until: Callable[[list[Record]], bool], timeout: float = 30.0
) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while not until(records):
        assert time.monotonic() < deadline, f"gave up after {timeout}s with {len(records)} records"
        records += consumer.poll(500, 0.2)
    return records


def wait_for(
    consumers: list[Consumer], condition: Callable[[], bool], timeout: float = 60.0
) -> None:
    """Poll every consumer (records are dropped) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the group did not settle in time"
        for c in consumers:
            c.poll(10, 0.1)


def test_per_key_order_and_kafka_partitioner(backend: Backend) -> None:
    topic = backend.topic(3)
    keys = [f"user-{i}".encode() for i in range(25)]
    produce(
        backend.log, topic, [(k, f"{k.decode()}:{seq}".encode()) for seq in range(12) for k in keys]
    )
    consumer = backend.log.consumer(None, [topic])
    records = drain(consumer, lambda rs: len(rs) >= 300)
    consumer.close()
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        assert r.key is not None
        # Same key, same partition on both backends: both use Kafka's murmur2.
        assert r.partition == partition_for(r.key, 3)
        by_key.setdefault(r.key, []).append(int(r.value.split(b":")[1]))
    assert all(seqs == list(range(12)) for seqs in by_key.values())
    info = backend.log.describe_topic(topic)
    ends = {p.partition: p.end_offset for p in info.partitions}
    expected = {p: 12 * sum(1 for k in keys if partition_for(k, 3) == p) for p in range(3)}
    assert ends == expected


def test_group_of_two_splits_three_partitions_two_and_one(backend: Backend) -> None:
    topic, group = backend.topic(3), group_name()
    a = backend.log.consumer(group, [topic], client_id="a")
    b = backend.log.consumer(group, [topic], client_id="b")
    try:
        wait_for(
            [a, b],
            lambda: (
                len(a.assignment()) + len(b.assignment()) == 3
                and bool(a.assignment())
                and bool(b.assignment())
            ),
        )
        assert sorted([len(a.assignment()), len(b.assignment())]) == [1, 2]
        assert not a.assignment() & b.assignment()
    finally:
        a.close()
        b.close()


CRASHING_WORKER = r"""
import json, sys, time
from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings
from shopsentry.errors import CommitFailed
settings = Settings(**json.loads(sys.argv[1]))
topic, group = sys.argv[2], sys.argv[3]
log = open_log(BusConfig.from_settings(settings), create_topics=False)
consumer = log.consumer(group, [topic], client_id="doomed")
while True:
    batch = consumer.poll(5, 0.2)
    for r in batch:
        print("P", r.partition, r.offset, flush=True)
    if batch:
        try:
            consumer.commit()
        except CommitFailed:  # a rebalance is under way: the next owner redoes this batch
            print("F", flush=True)
    print("A", ",".join(str(tp.partition) for tp in sorted(consumer.assignment())), flush=True)
    time.sleep(0.05)  # a slow worker, so it is killed with work left
"""


def test_kill_9_of_a_consumer_process_loses_nothing(backend: Backend) -> None:
    topic, group = backend.topic(3), group_name()
    total = 600
    produce(
        backend.log, topic, [(f"user-{i % 40}".encode(), str(i).encode()) for i in range(total)]
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, backend.settings.model_dump_json(), topic, group],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processed: set[tuple[int, int]] = set()
    child_assignment: list[str] = []

    def read_child() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            kind, *rest = line.split()
            if kind == "P":
                processed.add((int(rest[0]), int(rest[1])))
            elif kind == "A":
                child_assignment.append(rest[0] if rest else "")

    reader = threading.Thread(target=read_child, daemon=True)
    reader.start()

    def child_holds() -> int:
        return (
            len(child_assignment[-1].split(",")) if child_assignment and child_assignment[-1] else 0
        )

    deadline = time.monotonic() + 60
    while not (child_holds() == 3 and len(processed) >= 10):
        assert time.monotonic() < deadline, "the worker process never got going"
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        time.sleep(0.05)
    survivor = backend.log.consumer(group, [topic], client_id="survivor")
    try:
        mine: list[Record] = []
        while not (survivor.assignment() and child_holds() + len(survivor.assignment()) == 3):
            assert time.monotonic() < deadline, (
                f"no split: {child_assignment[-1:]} {survivor.assignment()}"
            )
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            mine += survivor.poll(5, 0.1)
        assert sorted([child_holds(), len(survivor.assignment())]) == [1, 2]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        # After the session timeout the survivor owns everything and finishes the work.
        deadline = time.monotonic() + backend.session_s + 60

        def done() -> set[tuple[int, int]]:
            return {(r.partition, r.offset) for r in mine} | processed

        while len(survivor.assignment()) < 3 or len(done()) < total:
            assert time.monotonic() < deadline, (
                f"survivor has {sorted(survivor.assignment())}, {len(done())} of {total} processed"
            )
            mine += survivor.poll(200, 0.2)
            survivor.commit()
        ends = {p.partition: p.end_offset for p in backend.log.describe_topic(topic).partitions}
        assert sum(ends.values()) == total
        # Every event processed at least once, none lost.
        assert done() == {(p, o) for p, end in ends.items() for o in range(end)}
    finally:
        if child.poll() is None:
            child.kill()
        survivor.close()


def test_committed_offsets_survive_restart(backend: Backend) -> None:
    topic, group = backend.topic(3), group_name()
    total = 240
    produce(backend.log, topic, [(f"u{i % 30}".encode(), str(i).encode()) for i in range(total)])
    first = backend.log.consumer(group, [topic])
    seen = drain(first, lambda rs: len(rs) >= 90)
    first.commit()
    tps = [TopicPartition(topic, p) for p in range(3)]
    committed = first.committed(tps)
    first.close()
    # A new handle, as after a restart of the process.
    log2 = backend.reopen()
    second = log2.consumer(group, [topic])
    try:
        assert second.committed(tps) == committed
        rest = drain(second, lambda rs: len(seen) + len(rs) >= total)
        assert sorted(int(r.value) for r in seen + rest) == list(range(total))
        for tp in tps:
            offsets = [r.offset for r in rest if r.partition == tp.partition]
            if offsets:
                assert min(offsets) == (committed[tp] or 0), "resumed elsewhere than the commit"
    finally:
        second.close()
        log2.close()


def test_replay_from_offset_and_from_timestamp(backend: Backend) -> None:
    topic, group = backend.topic(1), group_name()
    base = int(time.time() * 1000) - 60_000
    producer = backend.log.producer()
    for i in range(40):
        producer.send(topic, str(i).encode(), key=b"k", timestamp_ms=base + i * 1000)
        if i % 9 == 0:
            producer.flush()
    producer.close()
    consumer = backend.log.consumer(group, [topic])
    tp = TopicPartition(topic, 0)
    try:
        first = drain(consumer, lambda rs: len(rs) >= 40)
        assert [r.offset for r in first] == list(range(40))
        assert [r.timestamp_ms for r in first] == [base + i * 1000 for i in range(40)]
        consumer.seek(tp, 17)
        replay = drain(consumer, lambda rs: len(rs) >= 23)
        assert [int(r.value) for r in replay] == list(range(17, 40))
        consumer.seek_to_timestamp(base + 29 * 1000 - 400)
        replay = drain(consumer, lambda rs: len(rs) >= 11)
        assert [r.offset for r in replay] == list(range(29, 40))
    finally:
        consumer.close()


def test_retention_settings_applied(backend: Backend) -> None:
    topic = backend.topic(1, retention_ms=3_600_000)
    info = backend.log.describe_topic(topic)
    assert info.config["retention.ms"] == "3600000"
    now = int(time.time() * 1000)
    produce(
        backend.log, topic, [(b"k", b"old-%d" % i) for i in range(5)], timestamp_ms=now - 7_200_000
    )
    produce(backend.log, topic, [(b"k", b"new-%d" % i) for i in range(3)], timestamp_ms=now)
    (part,) = backend.log.describe_topic(topic).partitions
    assert part.end_offset == 8
    if backend.name != "local":
        return  # Kafka deletes on its own schedule (log.retention.check.interval.ms)
    assert backend.log.apply_retention() == 5  # type: ignore[attr-defined]
    (part,) = backend.log.describe_topic(topic).partitions
    assert (part.start_offset, part.end_offset) == (5, 8)
    consumer = backend.log.consumer(None, [topic])
    assert [r.value for r in drain(consumer, lambda rs: len(rs) >= 3)] == [
        b"new-0",
        b"new-1",
        b"new-2",
    ]
    consumer.close()


def test_a_topic_meant_to_be_compacted_but_made_with_delete_is_switched(
    backend: Backend,
) -> None:
    """An older release made the rules-control topic with cleanup.policy=delete: creating
    the topics again makes it compacted (never the other way round), records kept."""
    topic = backend.topic(1, cleanup_policy="delete")
    produce(backend.log, topic, [(b"k", b"v0")])
    spec = TopicSpec(topic, 1, replication_factor=1, min_insync_replicas=1)
    backend.log.create_topics([dataclasses.replace(spec, cleanup_policy="compact")])
    info = backend.log.describe_topic(topic)
    assert info.config["cleanup.policy"] == "compact"
    assert info.partitions[0].end_offset == 1
    backend.log.create_topics([spec])  # a "delete" spec leaves a compacted topic alone
    assert backend.log.describe_topic(topic).config["cleanup.policy"] == "compact"


def test_a_compacted_topic_keeps_the_latest_record_of_each_key(backend: Backend) -> None:
    topic = backend.topic(1, retention_ms=-1, cleanup_policy="compact")
    assert backend.log.describe_topic(topic).config["cleanup.policy"] == "compact"
    produce(backend.log, topic, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(9)])
    consumer = backend.log.consumer(None, [topic])
    seen = drain(consumer, lambda rs: bool(rs) and rs[-1].offset == 8)
    consumer.close()
    # Compacted or not yet (Kafka's cleaner runs on its own schedule), the last record
    # of each key is there with its offset, and nothing is out of order.
    assert {r.key: (r.offset, r.value) for r in seen} == {
        b"k0": (6, b"v6"), b"k1": (7, b"v7"), b"k2": (8, b"v8"),
    }  # fmt: skip
    assert [r.offset for r in seen] == sorted(r.offset for r in seen)
    if backend.name != "local":
        return
    assert backend.log.compact() == 6  # type: ignore[attr-defined]
    consumer = backend.log.consumer(None, [topic])
    assert [r.offset for r in drain(consumer, lambda rs: len(rs) >= 3)] == [6, 7, 8]
    consumer.close()


def test_topics_describe_cli_shows_offsets_and_group_lag(backend: Backend) -> None:
    """`shopsentry topics describe` reads either backend through the same interface."""
    topic, group = backend.topic(2), group_name()
    produce(backend.log, topic, [(f"u{i}".encode(), b"{}") for i in range(20)])
    consumer = backend.log.consumer(group, [topic])
    taken = drain(consumer, lambda rs: len(rs) >= 5)
    consumer.commit()
    consumer.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsentry",
            "--data-dir",
            str(backend.settings.data_dir),
            "--bus",
            backend.settings.bus,
            "topics",
            "describe",
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stderr
    ends = {p.partition: p.end_offset for p in backend.log.describe_topic(topic).partitions}
    assert sum(ends.values()) == 20
    rows = [line.split("│") for line in result.stdout.splitlines() if group in line]
    assert len(rows) == 2
    lag = sum(int(cells[5]) for cells in rows)
    assert lag == 20 - len(taken)
    assert "retention.ms" in result.stdout
