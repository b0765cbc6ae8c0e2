"""A third-party client (kcat, librdkafka's CLI) and shopsentry read each other's
records: plain JSON values, key = user_id, same partition for the same key."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from shopsentry.bus import TopicSpec, partition_for
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from shopsentry.events.codec import decode
from shopsentry.events.schema import Purchase
from tests.conftest import require
from tests.integration.kafka.events import encoded, purchase

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

PARTITIONS = 3


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    require(path is not None, "kcat", "install it with `make system-deps` (Debian package kcat)")
    assert path is not None
    return path


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"kcat-{uuid.uuid4().hex[:8]}"
    KafkaLog(kafka_bootstrap, KafkaSettings()).create_topics(
        [TopicSpec(name, partitions=PARTITIONS, replication_factor=1, min_insync_replicas=1)]
    )
    return name


def test_events_produced_by_kcat_are_consumed_and_validated(
    kcat: str, kafka_bootstrap: str, topic: str
) -> None:
    events = [purchase(i, users=7) for i in range(40)]
    lines = "".join(f"{e.user_id}:{e.model_dump_json()}\n" for e in events)
    lines += "user-bad:{not json at all\n"  # one bad record must not stop the consumer
    subprocess.run(
        # murmur2_random: the Java client's partitioner, which shopsentry uses too
        [kcat, "-P", "-b", kafka_bootstrap, "-t", topic, "-K:", "-X", "partitioner=murmur2_random"],
        input=lines.encode(),
        check=True,
        timeout=60,
    )

    log = KafkaLog(kafka_bootstrap, KafkaSettings())
    consumer = log.consumer(None, [topic])
    records = []
    deadline = time.monotonic() + 30
    while len(records) < len(events) + 1 and time.monotonic() < deadline:
        records.extend(consumer.poll(max_records=100, timeout=0.5))
    consumer.close()

    decoded, invalid = [], []
    for record in records:
        try:
            decoded.append((record, decode(record.value)))
        except Exception as exc:
            invalid.append((record, exc))
    assert len(decoded) == len(events) and len(invalid) == 1
    assert invalid[0][0].key == b"user-bad"
    assert type(invalid[0][1]).__name__ == "InvalidEvent"
    by_id = {e.event_id: e for e in events}
    for record, event in decoded:
        assert isinstance(event, Purchase)
        assert event == by_id[event.event_id]
        assert record.key == event.user_id.encode()
        assert record.partition == partition_for(record.key, PARTITIONS)


def test_what_shopsentry_produces_is_plain_json_keyed_by_user_for_kcat(
    kcat: str, kafka_bootstrap: str, topic: str
) -> None:
    log = KafkaLog(kafka_bootstrap, KafkaSettings())
    producer = log.producer()
    sent = [encoded(i, users=11) for i in range(30)]
    for value, key in sent:
        producer.send(topic, value, key)
    producer.flush()

    as_json = (
        subprocess.run(
            [kcat, "-C", "-b", kafka_bootstrap, "-t", topic, "-e", "-q", "-J"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .splitlines()
    )
    assert len(as_json) == len(sent)
    for line in as_json:
        message = json.loads(line)
        payload = json.loads(message["payload"])  # the value is plain JSON text
        assert message["key"] == payload["user_id"]
        assert message["partition"] == partition_for(message["key"].encode(), PARTITIONS)
        assert payload["event_type"] == "purchase"
    assert sorted(json.loads(m)["payload"].encode() for m in as_json) == sorted(v for v, _ in sent)

    formatted = (
        subprocess.run(
            [kcat, "-C", "-b", kafka_bootstrap, "-t", topic, "-e", "-q", "-f", "%k %s\n"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .splitlines()
    )
    pairs = sorted(tuple(line.split(" ", 1)) for line in formatted)
    assert pairs == sorted((k.decode(), v.decode()) for v, k in sent)
