"""The delivery ledger: which (alert, channel) pairs are done, kept in SQLite.

Offsets alone cannot give "once per channel": a notifier that crashes after delivering
to the webhook but before committing would resend on restart. So each finished
delivery is written here (in its own transaction) as soon as the receiver accepted it,
and a redelivered alert is checked against it first. The remaining window, a crash
between the receiver's 2xx and this write, is covered by the Idempotency-Key header.

The ledger is also the notifier's sink on the stream runtime (:mod:`shopsentry.stream`):
the batch's dead-lettered deliveries, its dead-letter records (the outbox) and the
positions it reached are written in one transaction, fenced, before anything is
produced; a new owner re-produces a crashed one's outbox.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shopsentry.bus.base import TopicPartition
from shopsentry.stream.base import check_fence
from shopsentry.stream.sqlite_positions import positions_table, read_positions, write_positions

if TYPE_CHECKING:
    from shopsentry.stream.base import Checkpoint, Output

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "dead_lettered"]

_SCHEMA = """
create table if not exists deliveries (
    alert_id     text not null,
    channel      text not null,
    outcome      text not null,
    attempts     integer not null,
    detail       text not null default '',
    finished_at  real not null,
    primary key (alert_id, channel)
) without rowid;
create table if not exists outbox (batch_id text primary key, blob blob not null);
create table if not exists outbox_of (
    topic text not null, partition integer not null, batch_id text not null,
    primary key (topic, partition)
);
"""

_POSITIONS = "positions"
# One finished delivery: (alert_id, channel, outcome, attempts, detail).
Entry = tuple[str, str, "Outcome", int, str]


class DeliveryLedger:
    """Finished deliveries, safe to share between threads of one process and between
    notifier processes on one machine (SQLite WAL with a busy timeout)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("pragma journal_mode=wal")
        self._conn.execute("pragma synchronous=full")
        self._conn.executescript(_SCHEMA + positions_table(_POSITIONS))

    def outcome(self, alert_id: str, channel: str) -> Outcome | None:
        """How the delivery of ``alert_id`` to ``channel`` ended, or None if it has not."""
        with self._lock:
            row = self._conn.execute(
                "select outcome from deliveries where alert_id = ? and channel = ?",
                (alert_id, channel),
            ).fetchone()
        return row[0] if row else None

    def record(
        self, alert_id: str, channel: str, outcome: Outcome, *, attempts: int, detail: str = ""
    ) -> None:
        """Mark a delivery finished (durably: synchronous=full) before its offset is committed."""
        with self._lock:
            self._insert([(alert_id, channel, outcome, attempts, detail)])

    def _insert(self, entries: Sequence[Entry]) -> None:
        self._conn.executemany(
            "insert into deliveries"
            " (alert_id, channel, outcome, attempts, detail, finished_at)"
            " values (?, ?, ?, ?, ?, ?) on conflict (alert_id, channel) do nothing",
            [(a, c, o, n, d[:500], time.time()) for a, c, o, n, d in entries],
        )

    # -- the stream runtime's sink ---------------------------------------------------
    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        stored = self._positions()
        return {tp: stored[tp] for tp in tps if tp in stored}

    def _positions(self) -> dict[TopicPartition, int]:
        with self._lock:
            return read_positions(self._conn, _POSITIONS)

    def save(self, checkpoint: Checkpoint) -> None:
        """The batch's ledger entries, outbox and positions in one transaction."""
        from shopsentry.stream.outbox import encode_outbox

        entries: Sequence[Entry] = checkpoint.changes or ()
        blob = encode_outbox(checkpoint.outbox) if checkpoint.outbox else None
        with self._lock:
            self._conn.execute("begin immediate")
            try:
                stored = read_positions(self._conn, _POSITIONS)
                check_fence(stored, checkpoint.expected, str(self.path))
                self._insert(entries)
                self._point_outbox(checkpoint, blob)
                write_positions(self._conn, _POSITIONS, checkpoint.positions)
            except BaseException:
                self._conn.execute("rollback")
                raise
            self._conn.execute("commit")

    def _point_outbox(self, checkpoint: Checkpoint, blob: bytes | None) -> None:
        """Point the batch's partitions at its outbox (or none); drop unreferenced blobs."""
        db = self._conn
        keys = [(tp.topic, tp.partition) for tp in checkpoint.positions]
        db.executemany("delete from outbox_of where topic = ? and partition = ?", keys)
        if blob is not None:
            db.execute("insert or replace into outbox values (?, ?)", (checkpoint.outbox_id, blob))
            db.executemany(
                "insert into outbox_of values (?, ?, ?)",
                [(t, p, checkpoint.outbox_id) for t, p in keys],
            )
        db.execute("delete from outbox where batch_id not in (select batch_id from outbox_of)")

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        from shopsentry.stream.outbox import decode_outbox

        wanted = {(tp.topic, tp.partition) for tp in tps}
        with self._lock:
            rows = self._conn.execute(
                "select o.topic, o.partition, b.batch_id, b.blob from outbox_of as o"
                " join outbox as b using (batch_id) order by b.batch_id"
            ).fetchall()
        blobs = dict.fromkeys(bytes(blob) for t, p, _, blob in rows if (t, p) in wanted)
        return [out for blob in blobs for out in decode_outbox(blob)]

    def count(self, outcome: Outcome | None = None) -> int:
        with self._lock:
            if outcome is None:
                row = self._conn.execute("select count(*) from deliveries").fetchone()
            else:
                row = self._conn.execute(
                    "select count(*) from deliveries where outcome = ?", (outcome,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
