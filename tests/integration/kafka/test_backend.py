"""KafkaLog against the real single-node broker: admin, produce/consume, groups, and
the one-line errors for the things users get wrong (bad address, unknown topic, RF)."""

from __future__ import annotations

import time
import uuid

import pytest

from shopsentry.bus import TopicPartition, TopicSpec, partition_for
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from shopsentry.errors import BrokerUnavailable, ConfigError, UnknownTopic

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def log(kafka_bootstrap: str) -> KafkaLog:
    return KafkaLog(kafka_bootstrap, KafkaSettings(connect_timeout_s=5))


def _drain(consumer, expected: int, timeout: float = 30.0) -> list:
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(consumer.poll(max_records=1000, timeout=0.5))
    return records


def test_create_and_describe_topic_applies_partitions_retention_and_min_isr(log: KafkaLog) -> None:
    name = _name("described")
    spec = TopicSpec(
        name, partitions=3, replication_factor=1, retention_ms=3 * 86_400_000, min_insync_replicas=1
    )
    log.create_topics([spec])
    log.create_topics([spec])  # existing topics are fine

    info = log.describe_topic(name)
    assert name in log.list_topics()
    assert [p.partition for p in info.partitions] == [0, 1, 2]
    assert info.replication_factor == 1
    assert info.config["retention.ms"] == str(3 * 86_400_000)
    assert info.config["min.insync.replicas"] == "1"
    assert all(p.leader == 1 and p.isr == (1,) for p in info.partitions)
    assert all(p.start_offset == 0 and p.end_offset == 0 for p in info.partitions)


def test_keyed_records_land_in_the_murmur2_partition_in_order(log: KafkaLog) -> None:
    name = _name("keyed")
    log.create_topics([TopicSpec(name, partitions=3, replication_factor=1, min_insync_replicas=1)])
    producer = log.producer()
    keys = [f"user-{i}".encode() for i in range(30)]
    for round_ in range(5):
        for key in keys:
            producer.send(name, f"{key.decode()}:{round_}".encode(), key, headers=[("h", b"1")])
    producer.flush()

    consumer = log.consumer(None, [name])
    try:
        records = _drain(consumer, 150)
    finally:
        consumer.close()
    assert len(records) == 150
    for record in records:
        assert record.partition == partition_for(record.key, 3)
        assert record.header("h") == b"1"
    for key in keys:  # per-key order is the order sent
        rounds = [int(r.value.split(b":")[1]) for r in records if r.key == key]
        assert rounds == [0, 1, 2, 3, 4]
    info = log.describe_topic(name)
    assert sum(p.end_offset for p in info.partitions) == 150


def test_group_commits_survive_a_new_consumer_and_lag_is_reported(log: KafkaLog) -> None:
    name, group = _name("grouped"), _name("group")
    log.create_topics([TopicSpec(name, partitions=2, replication_factor=1, min_insync_replicas=1)])
    producer = log.producer()
    for i in range(40):
        producer.send(name, str(i).encode(), f"k{i}".encode())
    producer.flush()

    assigned: list[TopicPartition] = []
    first = log.consumer(group, [name], on_assign=assigned.extend)
    got = _drain(first, 25)
    first.commit()
    committed = first.committed([TopicPartition(name, 0), TopicPartition(name, 1)])
    first.close()
    assert sorted(assigned) == [TopicPartition(name, 0), TopicPartition(name, 1)]
    assert sum(v or 0 for v in committed.values()) == len(got)

    assert group in log.list_groups()
    lag = {(p.topic, p.partition): p for p in log.group_lag(group)}
    assert sum(p.lag for p in lag.values()) == 40 - len(got)

    second = log.consumer(group, [name])
    rest = _drain(second, 40 - len(got))
    second.close()
    assert len(rest) == 40 - len(got)  # committed offsets were picked up, nothing replayed
    assert {r.value for r in got} | {r.value for r in rest} == {str(i).encode() for i in range(40)}


def test_seek_and_seek_to_timestamp_replay(log: KafkaLog) -> None:
    name = _name("replay")
    log.create_topics([TopicSpec(name, partitions=1, replication_factor=1, min_insync_replicas=1)])
    producer = log.producer()
    # Recent timestamps: records older than the topic's 7-day retention may be deleted
    # by the broker at any moment, which would make the replay flaky.
    base = (int(time.time()) - 600) * 1000
    for i in range(10):
        producer.send(name, str(i).encode(), b"k", timestamp_ms=base + i * 1000)
    producer.flush()
    consumer = log.consumer(_name("g"), [name])
    try:
        assert len(_drain(consumer, 10)) == 10
        consumer.seek(TopicPartition(name, 0), 7)
        assert [r.value for r in _drain(consumer, 3)] == [b"7", b"8", b"9"]
        consumer.seek_to_timestamp(base + 4500)
        again = _drain(consumer, 5)
        assert [r.offset for r in again] == [5, 6, 7, 8, 9]
        assert again[0].timestamp_ms == base + 5000
    finally:
        consumer.close()


def test_unknown_topic_is_a_one_line_error(log: KafkaLog) -> None:
    with pytest.raises(UnknownTopic) as produced:
        log.producer().send("no-such-topic-here", b"x")
    with pytest.raises(UnknownTopic):
        log.consumer("g", ["no-such-topic-here"])
    with pytest.raises(UnknownTopic):
        log.describe_topic("no-such-topic-here")
    assert "\n" not in produced.value.one_line()


@pytest.mark.timeout(60, func_only=True)
def test_unreachable_broker_fails_within_the_connect_timeout() -> None:
    log = KafkaLog("127.0.0.1:1", KafkaSettings(connect_timeout_s=2))
    with pytest.raises(BrokerUnavailable) as caught:  # pytest-timeout bounds it: no hang
        log.list_topics()
    assert "127.0.0.1:1" in caught.value.one_line()
    assert "\n" not in caught.value.one_line()
    with pytest.raises(BrokerUnavailable):
        log.producer()


def test_replication_factor_larger_than_the_cluster_suggests_the_flag(log: KafkaLog) -> None:
    with pytest.raises(ConfigError) as caught:
        log.create_topics([TopicSpec(_name("wide"), partitions=1, replication_factor=3)])
    assert "--replication-factor 1" in caught.value.one_line()
