"""Several processes on one data dir (a producer and two workers, as the demo runs them),
and ``kill -9`` in the middle of writes: nothing acknowledged may be lost, nothing
committed may be processed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from shopsentry.bus.base import TopicSpec
from shopsentry.bus.local import LocalLog

PRODUCER = r"""
import sys
import threading
from pathlib import Path
from shopsentry.bus.local import LocalLog
directory, name = Path(sys.argv[1]), sys.argv[2]
count, per_flush = int(sys.argv[3]), int(sys.argv[4])
log = LocalLog(directory)
producer = log.producer()
i = 0
while count < 0 or i < count:
    for _ in range(per_flush):
        producer.send("events", f"{name}-{i}".encode(), key=f"user-{i % 37}".encode())
        i += 1
    producer.flush()
    print(i, flush=True)  # everything below i is acknowledged
producer.close()
"""

CONSUMER = r"""
import sys, time
from pathlib import Path
from shopsentry.bus.local import LocalLog
directory, stop_file = Path(sys.argv[1]), Path(sys.argv[2])
log = LocalLog(directory, session_timeout_ms=3000)
holder = {}
def on_revoke(tps):
    holder["c"].commit()
consumer = holder["c"] = log.consumer("workers", ["events"], on_revoke=on_revoke)
seen = []
while not stop_file.exists():
    batch = consumer.poll(100, 0.05)
    seen += [r.value.decode() for r in batch]
    if batch:
        consumer.commit()
print("ASSIGNED", len(consumer.assignment()), flush=True)
consumer.close()
for value in seen:
    print(value)
"""


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_producer_and_two_consumer_processes(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = LocalLog(directory)
    log.create_topics([TopicSpec("events", 3)])
    stop = tmp_path / "stop"
    consumers = [spawn(CONSUMER, directory, stop) for _ in range(2)]
    producers = [spawn(PRODUCER, directory, name, 3000, 100) for name in ("p1", "p2")]
    for p in producers:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    deadline = time.monotonic() + 30
    while True:
        lag = log.group_lag("workers")
        members = log.group_members("workers")
        if len(lag) == 3 and all(p.lag == 0 for p in lag) and len(members) == 2:
            break
        assert time.monotonic() < deadline, f"workers did not catch up: {lag}"
        time.sleep(0.1)
    assert sorted(len(tps) for tps in members.values()) == [1, 2]
    stop.touch()
    processed: Counter[str] = Counter()
    for c in consumers:
        out, err = c.communicate(timeout=30)
        assert c.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("ASSIGNED")
        processed.update(lines[1:])
    expected = {f"{name}-{i}" for name in ("p1", "p2") for i in range(3000)}
    assert set(processed) == expected
    assert max(processed.values()) == 1, "a committed record was processed twice"
    log.close()


@pytest.mark.slow
def test_kill_9_mid_write_loses_no_acknowledged_record(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = LocalLog(directory)
    log.create_topics([TopicSpec("events", 3)])
    child = spawn(PRODUCER, directory, "k", -1, 250)
    acked = 0
    assert child.stdout is not None
    for line in child.stdout:
        acked = int(line)
        if acked >= 20_000:
            break
    os.kill(child.pid, signal.SIGKILL)  # most likely in the middle of the next batch
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    consumer = log.consumer(None, ["events"])
    values: set[str] = set()
    while True:
        batch = consumer.poll(5000, 0.5)
        if not batch:
            break
        values.update(r.value.decode() for r in batch)
    missing = [i for i in range(acked) if f"k-{i}" not in values]
    assert not missing, f"{len(missing)} acknowledged records lost"
    # Whatever the kill left behind, the log is consistent and writable.
    info = log.describe_topic("events")
    assert sum(p.end_offset for p in info.partitions) == len(values)
    with log.producer() as producer:
        producer.send("events", b"after", key=b"user-1")
    assert sum(p.end_offset for p in log.describe_topic("events").partitions) == len(values) + 1
    consumer.close()
    log.close()


WORKER = r"""
import sys
import threading
from pathlib import Path
from shopsentry.bus.local import LocalLog
directory, stop_file = Path(sys.argv[1]), Path(sys.argv[2])
log = LocalLog(directory, session_timeout_ms=3000)
holder = {}
def on_revoke(tps):
    holder["c"].commit()
consumer = holder["c"] = log.consumer("workers", ["events"], on_revoke=on_revoke)
last = None
while not stop_file.exists():
    batch = consumer.poll(50, 0.05)
    for r in batch:
        print("P", r.value.decode(), flush=True)
    if batch:
        consumer.commit()
    if len(consumer.assignment()) != last:
        last = len(consumer.assignment())
        print("A", last, flush=True)
consumer.close()
print("BYE", flush=True)
"""


class Worker:
    """A worker process and what it reported on stdout."""

    def __init__(self, directory: Path, stop: Path) -> None:
        self.stop = stop
        self.proc = spawn(WORKER, directory, stop)
        self.processed: list[str] = []
        self.holds = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "P":
                self.processed.append(rest)
            elif kind == "A":
                self.holds = int(rest)

    def leave(self) -> None:
        self.stop.touch()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.proc.returncode == 0, self.proc.stderr.read() if self.proc.stderr else ""


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_worker_processes_join_and_leave_without_loss_or_reprocessing(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = LocalLog(directory)
    log.create_topics([TopicSpec("events", 3)])

    def produce(start: int, count: int) -> None:
        with log.producer() as producer:
            for i in range(start, start + count):
                producer.send("events", str(i).encode(), key=f"user-{i % 41}".encode())

    produce(0, 2000)
    w1 = Worker(directory, tmp_path / "stop1")
    wait_until(lambda: w1.holds == 3, "the first worker to take all partitions")
    w2 = Worker(directory, tmp_path / "stop2")
    wait_until(lambda: w2.holds >= 1 and w1.holds + w2.holds == 3, "a 2 + 1 split")
    assert sorted([w1.holds, w2.holds]) == [1, 2]
    produce(2000, 2000)
    w3 = Worker(directory, tmp_path / "stop3")
    wait_until(lambda: (w1.holds, w2.holds, w3.holds) == (1, 1, 1), "a third worker to join")
    w1.leave()
    wait_until(lambda: w2.holds + w3.holds == 3, "the leaver's partition to move")
    produce(4000, 2000)
    wait_until(
        lambda: (
            all(p.lag == 0 for p in log.group_lag("workers")) and len(log.group_lag("workers")) == 3
        ),
        "the workers to catch up",
    )
    w2.leave()
    w3.leave()
    processed = Counter(w1.processed + w2.processed + w3.processed)
    assert set(processed) == {str(i) for i in range(6000)}, "records lost"
    assert max(processed.values()) == 1, "committed work was processed again"
    log.close()
