"""Log compaction of the embedded log: a ``cleanup_policy="compact"`` topic keeps the
latest record of each key, as Kafka's log cleaner does.

What a consumer sees follows Kafka's guarantees:

- offsets never change: a kept record keeps its offset, so the partition has gaps where
  older records of a key were, and a consumer positioned in a gap reads on from the next
  kept record;
- the latest record of every key is never removed (so the last record of a partition
  always stays, and its end offset is unchanged);
- records without a key are kept (Kafka refuses them on a compacted topic; the embedded
  log is more forgiving and never drops what it accepted);
- there are no tombstones: a record's value is never null in this interface, so a key
  is never deleted, only superseded.

Each partition has a cleaner checkpoint (``clean_offset``): records below it are already
compacted. A producer compacts a topic it writes to at its periodic retention check, once
the records past the checkpoint are at least as many as the records kept before it
(Kafka's ``min.cleanable.dirty.ratio`` of 0.5), so the cost stays proportional to what
changed. :meth:`LocalLog.compact` compacts at once.

Kept records are rewritten into batches of consecutive offsets (a batch's row id is its
base offset; see :mod:`.codec`), in one transaction per partition: a concurrent reader
sees the partition before or after, never half of it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from shopsentry.bus.base import Record
from shopsentry.bus.local import codec
from shopsentry.bus.local.sqlite import PARTITION_SPAN, batch_id, transaction

logger = logging.getLogger(__name__)

DIRTY_RATIO = 0.5  # compact once dirty records are this share of the partition (Kafka's default)
MAX_BATCH_RECORDS = 2_000  # records per rewritten batch


def compact(
    conn: sqlite3.Connection, topics: Sequence[str] | None = None, *, when_dirty: bool = False
) -> int:
    """Compact the compacted topics among ``topics`` (all when None); returns how many
    records were removed. ``when_dirty``: only partitions past the dirty ratio."""
    query = (
        "SELECT p.id, t.name, p.partition FROM topics t JOIN partitions p ON p.topic = t.name"
        " WHERE t.cleanup_policy = 'compact'"
    )
    params: tuple[str, ...] = ()
    if topics is not None:
        if not topics:
            return 0
        query += f" AND t.name IN ({','.join('?' * len(topics))})"
        params = tuple(topics)
    removed = 0
    for pid, topic, partition in conn.execute(query, params).fetchall():
        if when_dirty and not _dirty(conn, pid):
            continue
        removed += _compact_partition(conn, pid, topic, partition)
    if removed:
        logger.info("compaction removed %d superseded records", removed)
    return removed


def _dirty(conn: sqlite3.Connection, pid: int) -> bool:
    """True when the records past the checkpoint reach the dirty ratio of the partition."""
    end, clean = conn.execute(
        "SELECT end_offset, clean_offset FROM partitions WHERE id = ?", (pid,)
    ).fetchone()
    dirty = end - clean
    if dirty <= 0:
        return False
    lo = pid * PARTITION_SPAN
    kept = conn.execute(
        "SELECT coalesce(sum(record_count), 0) FROM batches WHERE id >= ? AND id < ?",
        (lo, lo + clean),
    ).fetchone()[0]
    return bool(dirty >= DIRTY_RATIO * (kept + dirty))


def _compact_partition(conn: sqlite3.Connection, pid: int, topic: str, partition: int) -> int:
    lo = pid * PARTITION_SPAN
    with transaction(conn):
        end = conn.execute("SELECT end_offset FROM partitions WHERE id = ?", (pid,)).fetchone()[0]
        records: list[Record] = []
        for row_id, payload in conn.execute(
            "SELECT id, payload FROM batches WHERE id >= ? AND id < ? ORDER BY id",
            (lo, lo + end),
        ):
            records += codec.decode_batch(payload, topic, partition, row_id - lo)
        latest = {r.key: r.offset for r in records if r.key is not None}
        kept = [r for r in records if r.key is None or latest[r.key] == r.offset]
        removed = len(records) - len(kept)
        if removed:
            conn.execute("DELETE FROM batches WHERE id >= ? AND id < ?", (lo, lo + end))
            conn.executemany(
                "INSERT INTO batches VALUES (?, ?, ?, ?)",
                [_batch_row(pid, run) for run in _runs(kept)],
            )
        conn.execute("UPDATE partitions SET clean_offset = ? WHERE id = ?", (end, pid))
    return removed


def _runs(records: Sequence[Record]) -> list[list[Record]]:
    """Records split where their offsets jump (or a batch is full): each run one batch."""
    runs: list[list[Record]] = []
    for record in records:
        last = runs[-1] if runs else None
        if last and last[-1].offset + 1 == record.offset and len(last) < MAX_BATCH_RECORDS:
            last.append(record)
        else:
            runs.append([record])
    return runs


def _batch_row(pid: int, run: Sequence[Record]) -> tuple[int, int, int, bytes]:
    timestamps = [r.timestamp_ms for r in run]
    headers = [r.headers for r in run]
    payload = codec.encode_batch(
        timestamps, [r.key for r in run], [r.value for r in run], headers if any(headers) else None
    )
    return batch_id(pid, run[0].offset), len(run), max(timestamps), payload
