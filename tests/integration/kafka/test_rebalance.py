"""Cooperative rebalancing on real Kafka: ``on_revoke`` runs while the partition is still
ours, so a commit made there hands the new owner an exact position (no redelivery), and
``close()`` revokes (and lets the application commit) before leaving the group."""

from __future__ import annotations

import time
import uuid

import pytest

from shopsentry.bus import TopicPartition, TopicSpec
from shopsentry.bus.base import Consumer
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_revoke_commits_before_partitions_move_and_close_leaves_cleanly(
    kafka_bootstrap: str,
) -> None:
    log = KafkaLog(kafka_bootstrap, KafkaSettings(session_timeout_ms=6_000))
    topic, group = f"rebalance-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    log.create_topics([TopicSpec(topic, partitions=2, replication_factor=1, min_insync_replicas=1)])
    producer = log.producer()
    for i in range(200):
        producer.send(topic, str(i).encode(), f"user-{i}".encode())
    producer.flush()

    revoked_a: list[TopicPartition] = []
    commits_in_revoke: list[list[TopicPartition]] = []
    holder: dict[str, Consumer] = {}

    def on_revoke(tps: list[TopicPartition]) -> None:
        revoked_a.extend(tps)
        holder["a"].commit()  # still ours: this commit must succeed (raises otherwise)
        commits_in_revoke.append(list(tps))

    a = log.consumer(group, [topic], on_revoke=on_revoke, client_id="a")
    holder["a"] = a
    seen_a: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen_a) < 200:
        assert time.monotonic() < deadline, f"A read only {len(seen_a)} of 200"
        seen_a += [int(r.value) for r in a.poll(500, 0.5)]
    assert len(a.assignment()) == 2

    b = log.consumer(group, [topic], client_id="b")
    seen_b: list[int] = []
    try:
        while not (len(a.assignment()) == 1 and len(b.assignment()) == 1):
            assert time.monotonic() < deadline, "the group did not rebalance to 1 + 1"
            a.poll(10, 0.1)
            seen_b += [int(r.value) for r in b.poll(10, 0.1)]
        # Cooperative: A gave up exactly the partition B got, and only that one.
        assert revoked_a == sorted(b.assignment())
        (moved,) = revoked_a
        ends = {p.partition: p.end_offset for p in log.describe_topic(topic).partitions}
        assert commits_in_revoke == [[moved]]
        for _ in range(10):  # B starts at A's commit: nothing is read twice
            seen_b += [int(r.value) for r in b.poll(100, 0.1)]
        assert seen_b == []
        assert b.committed([moved]) == {moved: ends[moved.partition]}

        (kept,) = a.assignment()
        a.close()  # revokes the kept partition through the callback, then leaves
        assert revoked_a == [moved, kept]
        assert log.group_lag(group) and all(p.lag == 0 for p in log.group_lag(group))
        # B takes over A's partition promptly (LeaveGroup, not a session timeout).
        while len(b.assignment()) < 2:
            assert time.monotonic() < deadline, "B never got A's partition after close()"
            seen_b += [int(r.value) for r in b.poll(10, 0.1)]
        assert seen_b == []
    finally:
        b.close()
