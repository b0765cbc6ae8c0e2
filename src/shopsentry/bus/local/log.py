"""``LocalLog``: the embedded event log, one SQLite database in a directory.

It implements :class:`shopsentry.bus.base.EventLog` with Kafka's semantics (partitions,
murmur2 keys, consumer groups with committed offsets, retention by time, compaction by
key) so that code written against it runs unchanged on Kafka. See :mod:`.store` for the durability
policy and :mod:`.groups` for how consumer groups work without a broker.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from shopsentry.bus.base import (
    PartitionLag,
    RebalanceCallback,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)
from shopsentry.bus.local import compaction
from shopsentry.bus.local import topics as topic_ops
from shopsentry.bus.local.consumer import LocalConsumer
from shopsentry.bus.local.producer import LocalProducer
from shopsentry.bus.local.sqlite import FsyncPolicy, connect, sqlite_errors
from shopsentry.errors import ConfigError

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _serialized(
    method: Callable[Concatenate[LocalLog, P], T],
) -> Callable[Concatenate[LocalLog, P], T]:
    """One admin call at a time on the shared connection (e.g. API request threads)."""

    @functools.wraps(method)
    def wrapper(log: LocalLog, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with log._lock:
            return method(log, *args, **kwargs)

    return wrapper


class LocalLog:
    """The embedded log in ``directory``; every producer and consumer gets its own
    connection, so one data dir can serve several threads and processes at once."""

    def __init__(
        self,
        directory: Path,
        fsync: FsyncPolicy = "batch",
        *,
        session_timeout_ms: int = 10_000,
        linger_ms: int = 5,
    ) -> None:
        if fsync not in ("batch", "always", "never"):
            raise ConfigError(f"unknown fsync policy {fsync!r}", hint="use batch, always or never")
        self._path = Path(directory)
        self.fsync: FsyncPolicy = fsync
        self.session_timeout_ms = session_timeout_ms
        self.linger_ms = linger_ms
        self._conn = connect(self._path, fsync)
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self._path

    # -- admin --------------------------------------------------------------------------
    @_serialized
    @sqlite_errors
    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet; existing ones are left alone."""
        topic_ops.create_topics(self._conn, specs)

    @_serialized
    @sqlite_errors
    def list_topics(self) -> list[str]:
        return topic_ops.list_topics(self._conn)

    @_serialized
    @sqlite_errors
    def describe_topic(self, name: str) -> TopicInfo:
        return topic_ops.describe_topic(self._conn, name)

    @_serialized
    @sqlite_errors
    def apply_retention(self, at_ms: int | None = None) -> int:
        """Delete batches past their topic's retention now (producers also do it every
        minute); returns how many records went."""
        return topic_ops.apply_retention(self._conn, at_ms)

    @_serialized
    @sqlite_errors
    def compact(self, topics: Sequence[str] | None = None) -> int:
        """Compact the ``cleanup_policy="compact"`` topics now, keeping the latest record of
        each key (producers also do it at their retention check, once enough changed);
        returns how many records went."""
        return compaction.compact(self._conn, topics)

    @_serialized
    @sqlite_errors
    def list_groups(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT group_id FROM groups UNION SELECT group_id FROM offsets ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    @_serialized
    @sqlite_errors
    def group_lag(self, group: str) -> list[PartitionLag]:
        """Every partition the group has committed on or is assigned, with its lag."""
        rows = self._conn.execute(
            """
            WITH tps AS (
                SELECT topic, partition FROM offsets WHERE group_id = :g
                UNION SELECT topic, partition FROM targets WHERE group_id = :g
            )
            SELECT tps.topic, tps.partition, o.next_offset, p.end_offset,
                   coalesce(w.member_id, t.member_id)
            FROM tps
            JOIN partitions p ON p.topic = tps.topic AND p.partition = tps.partition
            LEFT JOIN offsets o
                ON o.group_id = :g AND o.topic = tps.topic AND o.partition = tps.partition
            LEFT JOIN owners w
                ON w.group_id = :g AND w.topic = tps.topic AND w.partition = tps.partition
            LEFT JOIN targets t
                ON t.group_id = :g AND t.topic = tps.topic AND t.partition = tps.partition
            ORDER BY tps.topic, tps.partition
            """,
            {"g": group},
        ).fetchall()
        return [
            PartitionLag(group, t, p, committed, end, member)
            for t, p, committed, end, member in rows
        ]

    @_serialized
    @sqlite_errors
    def group_members(self, group: str) -> dict[str, list[TopicPartition]]:
        """Live members of ``group`` and the partitions each holds right now."""
        members: dict[str, list[TopicPartition]] = {
            r[0]: []
            for r in self._conn.execute(
                "SELECT member_id FROM members WHERE group_id = ? ORDER BY rank", (group,)
            )
        }
        for member, topic, partition in self._conn.execute(
            "SELECT member_id, topic, partition FROM owners "
            "WHERE group_id = ? ORDER BY topic, partition",
            (group,),
        ):
            members.setdefault(member, []).append(TopicPartition(topic, partition))
        return members

    # -- clients ------------------------------------------------------------------------
    def producer(self, **options: Any) -> LocalProducer:
        """A producer; ``options`` (linger_ms, batch_records, buffer_records) tune batching."""
        options.setdefault("linger_ms", self.linger_ms)
        return LocalProducer(self._path, self.fsync, **options)

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
        session_timeout_ms: int | None = None,
    ) -> LocalConsumer:
        """A consumer of ``topics`` in ``group_id`` (None: every partition, no group)."""
        return LocalConsumer(
            self._path,
            self.fsync,
            group_id,
            topics,
            on_assign=on_assign,
            on_revoke=on_revoke,
            auto_offset_reset=auto_offset_reset,
            client_id=client_id,
            session_timeout_ms=session_timeout_ms or self.session_timeout_ms,
        )

    @_serialized
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LocalLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
