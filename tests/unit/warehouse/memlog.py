"""A minimal in-memory event log implementing the bus Protocol, for loader unit tests.

It keeps Kafka's conventions that the loader relies on (per-partition offsets, committed
offset = next to read, assignment visible after the first poll, seek) and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shopsentry.bus.base import (
    PartitionInfo,
    PartitionLag,
    Record,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)
from shopsentry.bus.partitioner import partition_for


class MemLog:
    def __init__(self) -> None:
        self.topics: dict[str, list[list[Record]]] = {}
        self.committed: dict[str, dict[TopicPartition, int]] = {}

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        for s in specs:
            self.topics.setdefault(s.name, [[] for _ in range(s.partitions)])

    def list_topics(self) -> list[str]:
        return sorted(self.topics)

    def describe_topic(self, name: str) -> TopicInfo:
        parts = self.topics[name]
        return TopicInfo(name, tuple(PartitionInfo(i, 0, len(p)) for i, p in enumerate(parts)))

    def list_groups(self) -> list[str]:
        return sorted(self.committed)

    def group_lag(self, group: str) -> list[PartitionLag]:
        return []

    def append(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        parts = self.topics[topic]
        p = partition_for(key, len(parts)) if key else 0
        parts[p].append(Record(topic, p, len(parts[p]), 0, key, value))

    def producer(self):  # pragma: no cover - not used by the loader
        raise NotImplementedError

    def consumer(
        self,
        group_id,
        topics,
        *,
        on_assign=None,
        on_revoke=None,
        auto_offset_reset="earliest",
        client_id=None,
    ):
        return MemConsumer(self, group_id, list(topics))

    def close(self) -> None:
        pass


class MemConsumer:
    def __init__(self, log: MemLog, group: str, topics: list[str]) -> None:
        self.log, self.group, self.topics = log, group, topics
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._pos: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        if not self._assigned:
            tps = [
                TopicPartition(t, i) for t in self.topics for i in range(len(self.log.topics[t]))
            ]
            self._assigned = frozenset(tps)
            committed = self.log.committed.get(self.group, {})
            self._pos = {tp: committed.get(tp, 0) for tp in tps}
        out: list[Record] = []
        for tp in sorted(self._assigned):
            part = self.log.topics[tp.topic][tp.partition]
            take = part[self._pos[tp] : self._pos[tp] + max_records - len(out)]
            out.extend(take)
            self._pos[tp] += len(take)
        return out

    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        self.log.committed.setdefault(self.group, {}).update(offsets or self._pos)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._pos[tp] = offset

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        raise NotImplementedError

    def committed(self, tps):
        c = self.log.committed.get(self.group, {})
        return {tp: c.get(tp) for tp in tps}

    def close(self) -> None:
        pass
