"""``KafkaLog.group_lag`` survives the death of the group coordinator's broker.

librdkafka aborts a process (``rd_kafka_enq_once_del_source_return: Assertion
'eonce->refcnt > 0' failed``, SIGABRT) that has a coordinator-bound admin request in
flight when the coordinator's connection drops. Before the fix, every process looping
``group_lag`` died at the first kill of that broker; now those requests run in a helper
child process (``shopsentry.bus.kafka_groups``), and the callers here must all live on
and read the group again once the coordinator moved.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from shopsentry.bus import TopicSpec
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from tests.integration.fixtures.kafka import ThreeBrokerCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.slow]

LOOPERS = 3
LOOP = """
import sys, time
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
log = KafkaLog(sys.argv[1], KafkaSettings(connect_timeout_s=10, request_timeout_ms=5000))
out = open(sys.argv[3], "a", buffering=1)
while True:
    try:
        lags = log.group_lag(sys.argv[2])
        out.write(f"ok {sum(p.lag for p in lags)}\\n")
    except Exception as exc:
        out.write(f"err {type(exc).__name__}\\n")
    time.sleep(0.1)
"""


def _committed_group(log: KafkaLog) -> str:
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-g-{uuid.uuid4().hex[:8]}"
    log.create_topics([TopicSpec(topic, partitions=3, replication_factor=3, min_insync_replicas=2)])
    producer = log.producer()
    for i in range(300):
        producer.send(topic, b"x", f"user-{i}".encode())
    producer.flush(timeout=60)
    consumer = log.consumer(group, [topic])
    seen: list[int] = []
    try:
        wait_until(
            lambda: len(seen) >= 300 or bool(seen.extend([1] * len(consumer.poll(500, 0.5)))),
            120,
            "the group to read 300 records",
        )
        consumer.commit()
    finally:
        consumer.close()
    return group


def _coordinator(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    return int(description.coordinator.id)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_group_lag_callers_live_through_a_coordinator_broker_kill(
    kafka_cluster: ThreeBrokerCluster, tmp_path: Path
) -> None:
    for i in range(3):
        if not kafka_cluster.alive(i):
            kafka_cluster.start(i)
    log = KafkaLog(kafka_cluster.bootstrap, KafkaSettings(connect_timeout_s=10))
    group = _committed_group(log)
    victim = kafka_cluster.broker_ids.index(_coordinator(kafka_cluster.bootstrap, group))
    outputs = [tmp_path / f"looper-{i}.log" for i in range(LOOPERS)]
    loopers = [
        subprocess.Popen([sys.executable, "-c", LOOP, kafka_cluster.bootstrap, group, str(out)])
        for out in outputs
    ]

    def all_alive() -> None:
        dead = [(i, p.returncode) for i, p in enumerate(loopers) if p.poll() is not None]
        assert not dead, f"group_lag callers died (index, exit code): {dead}"

    def each_has(count: int, prefix: str = "") -> bool:
        all_alive()
        return all(sum(line.startswith(prefix) for line in _lines(out)) >= count for out in outputs)

    try:
        wait_until(lambda: each_has(3, "ok"), 120, "every caller to read the group's lag")
        before = [len(_lines(out)) for out in outputs]
        kafka_cluster.kill(victim)
        wait_until(
            lambda: (
                all(len(_lines(o)) >= n + 10 for o, n in zip(outputs, before, strict=True))
                and each_has(0)
            ),
            180,
            "ten more group_lag calls from every caller after the coordinator's broker died",
        )
        kafka_cluster.start(victim)
        after = [len(_lines(out)) for out in outputs]
        wait_until(
            lambda: (
                each_has(0)
                and all(
                    any(line.startswith("ok") for line in _lines(o)[n:])
                    for o, n in zip(outputs, after, strict=True)
                )
            ),
            180,
            "every caller to read the group's lag again",
        )
        all_alive()
    finally:
        for looper in loopers:
            looper.kill()
            looper.wait()
        log.close()
