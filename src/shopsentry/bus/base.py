"""The event-log interface that the embedded log and Kafka both implement.

Conventions follow Kafka's so code moves between backends unchanged: offsets are
per partition and start at 0; a committed offset is the *next* offset to read;
timestamps are milliseconds since the epoch; a record's key decides its partition
with Kafka's murmur2 partitioner (:mod:`shopsentry.bus.partitioner`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic should look like when created."""

    name: str
    partitions: int
    replication_factor: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    min_insync_replicas: int = 2
    cleanup_policy: str = "delete"  # or "compact": keep the latest record per key


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    start_offset: int  # the earliest offset still kept (Kafka's low watermark)
    end_offset: int  # the offset the next record will get (Kafka's high watermark)
    leader: int | None = None
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def replication_factor(self) -> int:
        return max((len(p.replicas) for p in self.partitions), default=1) or 1


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end_offset: int
    member: str | None = None

    @property
    def lag(self) -> int:
        return self.end_offset - (self.committed or 0)


RebalanceCallback = Callable[[Sequence[TopicPartition]], None]


@runtime_checkable
class Producer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record. It is acknowledged (durable) only once :meth:`flush` returns."""
        ...

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every record sent so far is durable; raise ProduceError if any was not."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


@runtime_checkable
class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first.

        Records of one partition come in offset order. Rebalance callbacks run inside poll.
        """
        ...

    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        """Commit ``offsets`` (next offset to read), or the position after everything
        returned by poll so far. Raises CommitFailed if the group moved on.

        ``asynchronous=True`` may return before the commit is acknowledged (a backend
        where a commit is a network round trip sends it in the background, in order, and
        logs a failure); use it only where a lost commit costs a redelivery, nothing more."""
        ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        """Move every assigned partition to its first record at or after ``timestamp_ms``."""
        ...

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]: ...

    def close(self) -> None:
        """Leave the group (partitions are revoked through the callback first)."""
        ...


@runtime_checkable
class EventLog(Protocol):
    """A backend: the embedded log (``local``) or Apache Kafka (``kafka://``)."""

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet; existing ones are left alone."""
        ...

    def list_topics(self) -> list[str]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    def list_groups(self) -> list[str]: ...

    def group_lag(self, group: str) -> list[PartitionLag]: ...

    def producer(self) -> Producer: ...

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
    ) -> Consumer:
        """A consumer subscribed to ``topics`` in ``group_id`` (or unassigned-all if None:
        every partition, no group, no commits)."""
        ...

    def close(self) -> None: ...
