"""An in-memory :class:`~shopsentry.bus.base.EventLog` for unit tests.

Records live per partition in lists; a producer's records become visible only at
``flush`` (so a test can "crash" between send and flush); consumer groups split
partitions with a range assignment and rebalance eagerly (revoke all, assign anew) at
the next poll of every member after one joins or leaves. It passes the bus contract
tests that need no second process (tests/unit/bus/test_memory_log.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

from shopsentry.bus.base import (
    PartitionInfo,
    PartitionLag,
    RebalanceCallback,
    Record,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)
from shopsentry.bus.partitioner import partition_for
from shopsentry.errors import UnknownTopic


class MemoryLog:
    def __init__(self, partitions: Mapping[str, int] | None = None) -> None:
        self.data: dict[str, list[list[Record]]] = {
            t: [[] for _ in range(n)] for t, n in (partitions or {}).items()
        }
        self.config: dict[str, dict[str, str]] = {t: {} for t in self.data}
        self.committed: dict[tuple[str, TopicPartition], int] = {}
        self.members: dict[str, list[MemoryConsumer]] = {}
        self.generation: dict[str, int] = {}
        self.clock_ms = 1_700_000_000_000

    # -- admin -------------------------------------------------------------------------
    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            if spec.name not in self.data:
                self.data[spec.name] = [[] for _ in range(spec.partitions)]
                self.config[spec.name] = {"retention.ms": str(spec.retention_ms)}

    def list_topics(self) -> list[str]:
        return sorted(self.data)

    def describe_topic(self, name: str) -> TopicInfo:
        if name not in self.data:
            raise UnknownTopic(name)
        parts = tuple(
            PartitionInfo(p, 0, len(records), leader=0, replicas=(0,), isr=(0,))
            for p, records in enumerate(self.data[name])
        )
        return TopicInfo(name, parts, dict(self.config.get(name, {})))

    def list_groups(self) -> list[str]:
        return sorted({group for group, _ in self.committed} | set(self.members))

    def group_lag(self, group: str) -> list[PartitionLag]:
        return [
            PartitionLag(group, tp.topic, tp.partition, off, len(self.data[tp.topic][tp.partition]))
            for (g, tp), off in sorted(self.committed.items())
            if g == group
        ]

    def close(self) -> None:
        pass

    # -- records -------------------------------------------------------------------------
    def append(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Any = None,
        *,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> Record:
        if topic not in self.data:
            raise UnknownTopic(topic)
        parts = self.data[topic]
        if partition is None:
            partition = partition_for(key, len(parts)) if key is not None else 0
        if timestamp_ms is None:  # a producer's create time: it moves on
            timestamp_ms = self.clock_ms
            self.clock_ms += 1
        ts = timestamp_ms
        part = parts[partition]
        record = Record(topic, partition, len(part), ts, key, value, tuple(headers or ()))
        part.append(record)
        return record

    def records(self, topic: str) -> list[Record]:
        return [r for part in self.data[topic] for r in part]

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
    ) -> MemoryConsumer:
        for topic in topics:
            if topic not in self.data:
                raise UnknownTopic(topic)
        consumer = MemoryConsumer(self, group_id, list(topics), on_assign, on_revoke)
        consumer.latest = auto_offset_reset == "latest"
        if group_id is not None:
            self.members.setdefault(group_id, []).append(consumer)
            self.generation[group_id] = self.generation.get(group_id, 0) + 1
        return consumer

    def assignment_of(self, consumer: MemoryConsumer) -> list[TopicPartition]:
        """Range assignment: each topic's partitions split over the members in order."""
        if consumer.group is None:
            return consumer.all_partitions()
        members = self.members.get(consumer.group, [])
        index = members.index(consumer)
        mine = []
        for topic in consumer.topics:
            n = len(self.data[topic])
            share, extra = divmod(n, len(members))
            start = index * share + min(index, extra)
            count = share + (1 if index < extra else 0)
            mine += [TopicPartition(topic, p) for p in range(start, start + count)]
        return mine

    def expire_members(self, group: str) -> None:
        """Every member's session times out (they were killed): the group is empty."""
        if self.members.get(group):
            self.members[group] = []
            self.generation[group] += 1

    def leave(self, consumer: MemoryConsumer) -> None:
        if consumer.group is not None and consumer in self.members.get(consumer.group, []):
            self.members[consumer.group].remove(consumer)
            self.generation[consumer.group] += 1


class MemoryProducer:
    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.pending: list[tuple[str, bytes, bytes | None, Any, int | None, int | None]] = []
        self.flushes = 0

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        *,
        headers: Any = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        if topic not in self.log.data:
            raise UnknownTopic(topic)
        self.pending.append((topic, value, key, headers, timestamp_ms, partition))

    def flush(self, timeout: float = 30.0) -> None:
        for topic, value, key, headers, ts, partition in self.pending:
            self.log.append(topic, value, key, headers, timestamp_ms=ts, partition=partition)
        self.pending.clear()
        self.flushes += 1

    def close(self) -> None:
        self.flush()


class MemoryConsumer:
    def __init__(
        self,
        log: MemoryLog,
        group: str | None,
        topics: list[str],
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
    ) -> None:
        self.log = log
        self.group = group
        self.topics = topics
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.tps: list[TopicPartition] = []
        self.position: dict[TopicPartition, int] = {}
        self.latest = False
        self.polls = 0
        self._generation = -1

    def all_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.topics for p in range(len(self.log.data[t]))]

    def _rebalance(self) -> None:
        generation = self.log.generation.get(self.group, 0) if self.group is not None else 0
        if generation == self._generation:
            return
        self._generation = generation
        if self.tps and self.on_revoke:
            self.on_revoke(list(self.tps))
        self.tps = self.log.assignment_of(self)
        self.position = {}
        for tp in self.tps:
            start = self.log.committed.get((self.group, tp)) if self.group is not None else None
            if start is None:
                start = len(self.log.data[tp.topic][tp.partition]) if self.latest else 0
            self.position[tp] = start
        if self.on_assign:
            self.on_assign(list(self.tps))

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        self._rebalance()
        self.polls += 1
        out: list[Record] = []
        for tp in self.tps:
            part = self.log.data[tp.topic][tp.partition]
            take = part[self.position[tp] : self.position[tp] + max_records - len(out)]
            out.extend(take)
            self.position[tp] += len(take)
        return out

    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        if self.group is None:
            return
        for tp, offset in (offsets if offsets is not None else self.position).items():
            self.log.committed[(self.group, tp)] = offset

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.tps)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        return {tp: self.log.committed.get((self.group or "", tp)) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        for tp in self.tps:
            stamps = [r.timestamp_ms for r in self.log.data[tp.topic][tp.partition]]
            self.position[tp] = bisect.bisect_left(stamps, timestamp_ms)

    def close(self) -> None:
        if self.tps and self.on_revoke:
            self.on_revoke(list(self.tps))
        self.tps = []
        self.log.leave(self)
