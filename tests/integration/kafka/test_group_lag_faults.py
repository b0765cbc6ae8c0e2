"""``KafkaLog.group_lag`` survives the death of the group coordinator's broker.

librdkafka aborts a process (``rd_kafka_enq_once_del_source_return: Assertion
'eonce->refcnt > 0' failed``, SIGABRT, or a SIGSEGV) that has a coordinator-bound admin
request in flight when the coordinator's connection drops: its broker killed, or every
request of a process resumed from a long SIGSTOP timing out at once while the broker
restarted. Before the fix, the processes looping ``group_lag`` died that way (every one at
a coordinator kill; three of four resumed after a stop across a coordinator restart); now
those requests run in a helper child process (``shopsentry.bus.kafka_groups``), and the
callers here must all live on and read the group again once the coordinator moved.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


class Loopers:
    """Processes calling ``group_lag`` in a loop, each writing one line per call."""

    def __init__(self, bootstrap: str, group: str, directory: Path) -> None:
        self.outputs = [directory / f"looper-{i}.log" for i in range(LOOPERS)]
        self.processes = [  # each in its own session: a stop reaches its helper child too
            subprocess.Popen(
                [sys.executable, "-c", LOOP, bootstrap, group, str(out)], start_new_session=True
            )
            for out in self.outputs
        ]

    def all_alive(self) -> bool:
        dead = [(i, p.returncode) for i, p in enumerate(self.processes) if p.poll() is not None]
        assert not dead, f"group_lag callers died (index, exit code): {dead}"
        return True

    def counts(self) -> list[int]:
        return [len(_lines(out)) for out in self.outputs]

    def each_called(self, more: int, since: list[int], prefix: str = "") -> bool:
        """Every caller made ``more`` calls (starting with ``prefix``) after ``since``."""
        return self.all_alive() and all(
            sum(line.startswith(prefix) for line in _lines(out)[n:]) >= more
            for out, n in zip(self.outputs, since, strict=True)
        )

    def signal(self, sig: signal.Signals) -> None:
        for process in self.processes:
            os.killpg(process.pid, sig)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _ready(cluster: ThreeBrokerCluster, tmp_path: Path) -> tuple[KafkaLog, str, int, Loopers]:
    for i in range(3):
        if not cluster.alive(i):
            cluster.start(i)
    log = KafkaLog(cluster.bootstrap, KafkaSettings(connect_timeout_s=10))
    group = _committed_group(log)
    victim = cluster.broker_ids.index(_coordinator(cluster.bootstrap, group))
    loopers = Loopers(cluster.bootstrap, group, tmp_path)
    zero = [0] * LOOPERS
    wait_until(lambda: loopers.each_called(3, zero, "ok"), 120, "every caller to read the lag")
    return log, group, victim, loopers


def test_group_lag_callers_live_through_a_coordinator_broker_kill(
    kafka_cluster: ThreeBrokerCluster, tmp_path: Path
) -> None:
    log, _group, victim, loopers = _ready(kafka_cluster, tmp_path)
    try:
        before = loopers.counts()
        kafka_cluster.kill(victim)
        wait_until(
            lambda: loopers.each_called(10, before),
            180,
            "ten more group_lag calls from every caller after the coordinator's broker died",
        )
        kafka_cluster.start(victim)
        after = loopers.counts()
        wait_until(
            lambda: loopers.each_called(1, after, "ok"),
            180,
            "every caller to read the group's lag again",
        )
        assert loopers.all_alive()
    finally:
        loopers.stop()
        log.close()


def test_group_lag_callers_live_through_a_long_stop_across_a_coordinator_restart(
    kafka_cluster: ThreeBrokerCluster, tmp_path: Path
) -> None:
    """Fault 2 of the chaos run: stopped, the coordinator's broker restarted meanwhile,
    resumed; on the code before the fix every caller here died with SIGSEGV."""
    log, _group, victim, loopers = _ready(kafka_cluster, tmp_path)
    try:
        loopers.signal(signal.SIGSTOP)
        try:
            kafka_cluster.kill(victim)
            gone = kafka_cluster.broker_ids[victim]
            wait_until(
                lambda: gone not in log.describe()["brokers"],
                120,
                f"the cluster to drop broker {gone} while the callers are stopped",
                interval=0.5,
            )
            kafka_cluster.start(victim)  # returns once the broker is registered again
        finally:
            loopers.signal(signal.SIGCONT)
        resumed = loopers.counts()
        wait_until(
            lambda: loopers.each_called(10, resumed) and loopers.each_called(1, resumed, "ok"),
            180,
            "ten more group_lag calls, one of them answered, from every resumed caller",
        )
        assert loopers.all_alive()
    finally:
        loopers.stop()
        log.close()
