"""Topic metadata and retention of the embedded log (the SQL behind the admin calls)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shopsentry.bus.base import PartitionInfo, TopicInfo, TopicSpec
from shopsentry.bus.local.sqlite import PARTITION_SPAN, transaction
from shopsentry.errors import UnknownTopic

logger = logging.getLogger(__name__)

# "delete": records go by time (retention_ms); "compact": the latest record of each key
# stays for ever (see :mod:`.compaction`), as with Kafka's cleanup.policy.
CLEANUP_POLICIES = ("delete", "compact")


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """What a producer or consumer needs to know of a topic: the row id of each partition."""

    name: str
    partition_ids: tuple[int, ...]
    retention_ms: int

    @property
    def partitions(self) -> int:
        return len(self.partition_ids)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_topic(conn: sqlite3.Connection, name: str) -> TopicMeta:
    rows = conn.execute(
        "SELECT p.id, t.retention_ms FROM topics t JOIN partitions p ON p.topic = t.name "
        "WHERE t.name = ? ORDER BY p.partition",
        (name,),
    ).fetchall()
    if not rows:
        raise UnknownTopic(name)
    return TopicMeta(name, tuple(r[0] for r in rows), int(rows[0][1]))


def create_topics(conn: sqlite3.Connection, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    created = []
    with transaction(conn):
        for spec in specs:
            if spec.partitions < 1:
                raise ValueError(f"topic {spec.name!r} needs at least one partition")
            row = conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (spec.name,)
            ).fetchone()
            if row is not None:
                if row[0] != spec.partitions:
                    logger.warning(
                        "topic %s exists with %d partitions, not %d: left as it is",
                        spec.name,
                        row[0],
                        spec.partitions,
                    )
                _compact_existing(conn, spec)
                continue
            if spec.cleanup_policy not in CLEANUP_POLICIES:
                raise ValueError(
                    f"topic {spec.name!r}: cleanup_policy must be one of"
                    f" {', '.join(CLEANUP_POLICIES)}, not {spec.cleanup_policy!r}"
                )
            conn.execute(
                "INSERT INTO topics (name, partitions, replication_factor, retention_ms,"
                " min_insync_replicas, created_ms, cleanup_policy) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.partitions,
                    spec.replication_factor,
                    spec.retention_ms,
                    spec.min_insync_replicas,
                    now_ms(),
                    spec.cleanup_policy,
                ),
            )
            conn.executemany(
                "INSERT INTO partitions (topic, partition) VALUES (?, ?)",
                [(spec.name, p) for p in range(spec.partitions)],
            )
            created.append(spec.name)
    if created:
        logger.info("created topics %s", ", ".join(created))
    return created


def _compact_existing(conn: sqlite3.Connection, spec: TopicSpec) -> None:
    """A topic meant to be compacted that an older release created with ``delete`` is
    switched to compaction (never the other way: that would drop history), as on Kafka."""
    if spec.cleanup_policy != "compact":
        return
    changed = conn.execute(
        "UPDATE topics SET cleanup_policy = 'compact' WHERE name = ? AND cleanup_policy != ?",
        (spec.name, "compact"),
    ).rowcount
    if changed:
        logger.warning(
            "topic %s had cleanup_policy=delete; set it to compact, as its records must"
            " outlive retention",
            spec.name,
        )


def list_topics(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM topics ORDER BY name")]


def describe_topic(conn: sqlite3.Connection, name: str) -> TopicInfo:
    row = conn.execute(
        "SELECT retention_ms, replication_factor, min_insync_replicas, cleanup_policy"
        " FROM topics WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise UnknownTopic(name)
    parts = conn.execute(
        "SELECT partition, start_offset, end_offset FROM partitions "
        "WHERE topic = ? ORDER BY partition",
        (name,),
    ).fetchall()
    config = {
        "retention.ms": str(row[0]),
        "cleanup.policy": str(row[3]),
        "min.insync.replicas": "1",
    }
    return TopicInfo(
        name=name,
        partitions=tuple(
            PartitionInfo(p, start, end, leader=None, replicas=(), isr=())
            for p, start, end in parts
        ),
        config=config,
    )


def end_offsets(conn: sqlite3.Connection, topic: str) -> dict[int, int]:
    return dict(
        conn.execute(
            "SELECT partition, end_offset FROM partitions WHERE topic = ?", (topic,)
        ).fetchall()
    )


def apply_retention(
    conn: sqlite3.Connection, at_ms: int | None = None, topics: Sequence[str] | None = None
) -> int:
    """Delete whole batches older than each topic's ``retention_ms``; returns records deleted.
    A compacted topic keeps its records regardless of age (Kafka's ``cleanup.policy=compact``).

    As in Kafka, time is the largest timestamp in a batch, and only a prefix of each
    partition is deleted (the first batch still inside retention stops the deletion),
    so the kept records stay contiguous and the low watermark only moves forward.
    """
    at_ms = now_ms() if at_ms is None else at_ms
    query = (
        "SELECT p.id, t.retention_ms FROM topics t JOIN partitions p ON p.topic = t.name "
        "WHERE t.retention_ms >= 0 AND t.cleanup_policy = 'delete'"
    )
    params: tuple[str, ...] = ()
    if topics is not None:
        query += f" AND t.name IN ({','.join('?' * len(topics))})"
        params = tuple(topics)
    deleted = 0
    for pid, retention_ms in conn.execute(query, params).fetchall():
        lo, hi = pid * PARTITION_SPAN, (pid + 1) * PARTITION_SPAN
        cutoff = at_ms - retention_ms
        # Cheap check first, outside the write lock: is the oldest batch expired at all?
        first = conn.execute(
            "SELECT max_ts FROM batches WHERE id >= ? AND id < ? ORDER BY id LIMIT 1", (lo, hi)
        ).fetchone()
        if first is None or first[0] >= cutoff:
            continue
        with transaction(conn):
            keep = conn.execute(
                "SELECT min(id) FROM batches WHERE id >= ? AND id < ? AND max_ts >= ?",
                (lo, hi, cutoff),
            ).fetchone()[0]
            end = conn.execute("SELECT end_offset FROM partitions WHERE id = ?", (pid,)).fetchone()[
                0
            ]
            new_start = end if keep is None else keep - lo
            gone = conn.execute(
                "SELECT coalesce(sum(record_count), 0) FROM batches WHERE id >= ? AND id < ?",
                (lo, lo + new_start),
            ).fetchone()[0]
            conn.execute("DELETE FROM batches WHERE id >= ? AND id < ?", (lo, lo + new_start))
            conn.execute(
                "UPDATE partitions SET start_offset = max(start_offset, ?) WHERE id = ?",
                (new_start, pid),
            )
        deleted += int(gone)
    if deleted:
        logger.info("retention deleted %d records", deleted)
    return deleted
