"""Broker failures on the 3-broker cluster (RF 3, min.insync.replicas 2, acks=all).

The design's promise is that no acknowledged event is lost when a broker dies, and that
when too few replicas are left the producer is told plainly instead of being acked on a
single copy. These tests kill brokers with SIGKILL (a crash, no controlled shutdown).
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from shopsentry.bus import TopicSpec
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from shopsentry.errors import BrokerUnavailable, NotEnoughReplicas, ProduceError
from tests.integration.fixtures.kafka import ThreeBrokerCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 3


def _topic(log: KafkaLog, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    log.create_topics(
        [TopicSpec(name, partitions=PARTITIONS, replication_factor=3, min_insync_replicas=2)]
    )
    return name


def _event(event_id: str, user: int) -> tuple[bytes, bytes]:
    value = orjson.dumps({"event_id": event_id, "user_id": f"user-{user}", "amount": 42.5})
    return value, f"user-{user}".encode()


def _read_all(log: KafkaLog, topic: str) -> list[str]:
    """Every event id in the topic, from the start, until the end offsets are reached."""
    info = log.describe_topic(topic)
    remaining = {p.partition: p.end_offset for p in info.partitions}
    consumer = log.consumer(None, [topic])
    ids: list[str] = []
    positions = dict.fromkeys(remaining, 0)
    try:
        polls = 0
        while any(positions[p] < end for p, end in remaining.items()) and polls < 600:
            polls += 1
            for record in consumer.poll(max_records=5000, timeout=0.5):
                ids.append(orjson.loads(record.value)["event_id"])
                positions[record.partition] = record.offset + 1
    finally:
        consumer.close()
    return ids


def _full_isr(log: KafkaLog, topic: str, size: int) -> bool:
    try:
        return all(len(isr) >= size for isr in log.isr_of(topic).values())
    except BrokerUnavailable:  # the admin client still chasing a dead broker: ask again
        return False


def _ensure_all_up(cluster: ThreeBrokerCluster) -> None:
    for i in range(3):
        if not cluster.alive(i):
            cluster.start(i)


def test_killing_one_broker_while_producing_loses_no_acknowledged_event(
    kafka_cluster: ThreeBrokerCluster,
) -> None:
    _ensure_all_up(kafka_cluster)
    log = KafkaLog(kafka_cluster.bootstrap, KafkaSettings(connect_timeout_s=10))
    topic = _topic(log, "fault-one")
    producer = log.producer()
    total, batch = 100_000, 10_000
    acknowledged: list[str] = []
    pending: list[str] = []
    for i in range(total):
        event_id = f"evt-{i:06d}"
        value, key = _event(event_id, i % 997)
        producer.send(topic, value, key)
        pending.append(event_id)
        if i == 30_000:
            kafka_cluster.kill(0)  # mid-stream: some batches are in flight to it
        if len(pending) == batch:
            producer.flush(timeout=180)  # raises if any record of the batch was not acked
            acknowledged.extend(pending)
            pending.clear()
    producer.flush(timeout=180)
    acknowledged.extend(pending)
    assert not kafka_cluster.alive(0)

    stored = _read_all(log, topic)
    assert len(acknowledged) == total
    assert set(acknowledged) - set(stored) == set()  # nothing acknowledged is missing
    assert len(stored) == len(set(stored)) == total  # idempotence: retries added no copies
    assert all(len(isr) == 2 for isr in log.isr_of(topic).values())

    kafka_cluster.start(0)
    wait_until(lambda: _full_isr(log, topic, 3), 90, "broker 1 to rejoin the ISR")


def test_two_brokers_down_refuses_writes_clearly_and_resumes_when_one_returns(
    kafka_cluster: ThreeBrokerCluster,
) -> None:
    _ensure_all_up(kafka_cluster)
    settings = KafkaSettings(
        connect_timeout_s=10, delivery_timeout_ms=8_000, request_timeout_ms=5_000
    )
    log = KafkaLog(kafka_cluster.bootstrap, settings)
    topic = _topic(log, "fault-two")
    wait_until(lambda: _full_isr(log, topic, 3), 60, "a full ISR on the new topic")
    producer = log.producer()

    before = [f"before-{i}" for i in range(300)]
    for i, event_id in enumerate(before):
        producer.send(topic, *_event(event_id, i))
    producer.flush(timeout=60)

    kafka_cluster.kill(0)
    kafka_cluster.kill(1)
    wait_until(
        lambda: _full_isr(log, topic, 1) and not _full_isr(log, topic, 2),
        60,
        "the ISR to shrink to the last broker",
    )

    refused = [f"refused-{i}" for i in range(50)]
    for i, event_id in enumerate(refused):
        producer.send(topic, *_event(event_id, i))
    with pytest.raises(ProduceError) as caught:
        producer.flush(timeout=60)
    error = caught.value
    assert isinstance(error, NotEnoughReplicas)
    assert error.retryable
    assert "in-sync replicas" in error.one_line()
    assert "\n" not in error.one_line()
    assert error.failed == len(refused)

    kafka_cluster.start(1)
    wait_until(lambda: _full_isr(log, topic, 2), 90, "broker 2 to rejoin the ISR")
    after = [f"after-{i}" for i in range(300)]
    for i, event_id in enumerate(after):
        producer.send(topic, *_event(event_id, i))
    producer.flush(timeout=60)  # producing resumes: no exception

    stored = set(_read_all(log, topic))
    assert set(before) <= stored
    assert set(after) <= stored
    kafka_cluster.start(0)
