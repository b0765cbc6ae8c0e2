"""The delivery ledger: which (alert, channel) pairs are done, kept in SQLite.

Offsets alone cannot give "once per channel": a notifier that crashes after delivering
to the webhook but before committing would resend on restart. So each finished
delivery is written here (in its own transaction) before the offset is committed, and
a redelivered alert is checked against it first. The remaining window, a crash between
the receiver's 2xx and this write, is covered by the Idempotency-Key header.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Literal

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
) without rowid
"""


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
        self._conn.execute(_SCHEMA)

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
            self._conn.execute(
                "insert into deliveries"
                " (alert_id, channel, outcome, attempts, detail, finished_at)"
                " values (?, ?, ?, ?, ?, ?) on conflict (alert_id, channel) do nothing",
                (alert_id, channel, outcome, attempts, detail[:500], time.time()),
            )

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
