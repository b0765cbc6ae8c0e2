"""The alert store: what the service knows about alerts, decisions and reviews.

A background consumer (:mod:`shopsentry.api.consumer`) copies ``fraud-alerts``,
``decisions`` and ``purchase-events`` into this SQLite file so the API answers from an
index instead of scanning the log. It is the stream runtime's sink
(:mod:`shopsentry.stream`): per-partition positions are stored in the same transaction
as the rows, so a replay after a crash neither duplicates an alert nor counts traffic
twice; rows are keyed by ``event_id`` / ``alert_id`` besides. Purchases pass the
detector's own admission checks (:mod:`shopsentry.events.admission`): one verdict.

The tables and how each record becomes a row are in :mod:`shopsentry.api.read_model_rows`.
Every query binds its parameters; no caller-supplied text is ever formatted into SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.api import rule_hits
from shopsentry.api.read_model_rows import (
    ALERT_COLUMNS,
    SCHEMA,
    alert_item,
    count_traffic,
    end_to_end_ms,
    from_ms,
    put_alert,
    put_decision,
    put_purchase,
    to_ms,
    traffic_minute,
)
from shopsentry.bus.base import Record, TopicPartition
from shopsentry.config import DetectorSettings
from shopsentry.errors import InvalidEvent, TerminalError
from shopsentry.events.admission import Admission, admit
from shopsentry.events.codec import decode_as
from shopsentry.events.schema import Review
from shopsentry.stream.base import check_fence
from shopsentry.stream.dead_letters import DeadLetterLog
from shopsentry.stream.sqlite_positions import positions_table, read_positions, write_positions

if TYPE_CHECKING:
    from shopsentry.stream.base import Checkpoint, Output

# Re-exported: callers and tests import these from here, where they were first.
__all__ = [
    "AlertFilter",
    "AlertReadModel",
    "InvalidCursor",
    "UnknownAlert",
    "decode_cursor",
    "encode_cursor",
    "end_to_end_ms",
    "from_ms",
    "to_ms",
    "traffic_minute",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = DetectorSettings().max_event_bytes

HISTORY_LIMIT = 20
_POSITIONS = "offsets"
_MAX_MS = 2**53  # beyond it a time in milliseconds is no time this store wrote


class InvalidCursor(TerminalError):
    """A paging cursor that this store did not hand out."""


class UnknownAlert(TerminalError):
    """No alert has this id."""


def encode_cursor(decided_ms: int, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{decided_ms}|{alert_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        decided, _, alert_id = raw.partition("|")
        if not alert_id or not 0 <= int(decided) < _MAX_MS:
            raise ValueError(raw)
        return int(decided), alert_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(
            "cursor is not one this API returned", hint="pass next_cursor from a previous page"
        ) from None


@dataclass(frozen=True, slots=True)
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", self.status),
            ("severity", self.severity),
            ("user_id", self.user_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("decided_ms >= ?")
            params.append(to_ms(self.since))
        if self.until is not None:
            clauses.append("decided_ms < ?")
            params.append(to_ms(self.until))
        return (" and ".join(clauses) or "1 = 1"), params


class AlertReadModel:
    """SQLite (WAL) under the data dir; one writer thread (the consumer), many readers."""

    def __init__(
        self, path: Path, *, topics: dict[str, str], max_event_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        """``topics`` maps a role ('purchases', 'decisions', 'alerts', 'behavior') to a
        topic; ``max_event_bytes`` is the detector's limit (purchases over it are not
        stored, as the detector dead-letters them)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.topics = topics
        self.admission = Admission(
            topics.get("purchases", ""), topics.get("behavior", ""), max_event_bytes
        )
        self.dead_letter_log = DeadLetterLog(logger)
        self._kind_of = {name: kind for kind, name in topics.items()}
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.executescript(positions_table(_POSITIONS) + SCHEMA + rule_hits.SCHEMA)
        rule_hits.add_alert_column(self._db)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read with bound parameters (the only way callers reach the file)."""
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def ping(self) -> bool:
        return self.query("select 1") == [(1,)]

    # -- writes (the consumer), the stream runtime's sink: rows and positions in one tx --

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to read per partition this store has applied records of."""
        with self._lock:
            stored = read_positions(self._db, _POSITIONS)
        return {tp: stored[tp] for tp in tps if tp in stored}

    def save(self, checkpoint: Checkpoint) -> None:
        """Apply a batch's records and the positions they reach in one transaction;
        fenced like every sink (a second writer of the same file cannot interleave)."""
        records: Sequence[Record] = checkpoint.changes or ()
        now_ms = int(time.time() * 1000)
        with self._tx() as db:
            check_fence(read_positions(db, _POSITIONS), checkpoint.expected, str(self.path))
            for record in records:
                self._apply_one(db, record, now_ms)
            write_positions(db, _POSITIONS, checkpoint.positions)

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        return []  # the read model produces nothing

    def _apply_one(self, db: sqlite3.Connection, record: Record, now_ms: int) -> None:
        kind = self._kind_of.get(record.topic)
        if kind in ("purchases", "behavior"):
            count_traffic(db, record, now_ms)
        try:
            if kind == "purchases":
                self._put_admitted_purchase(db, record)
            elif kind == "decisions":
                put_decision(db, decode_as("decision", record.value))
            elif kind == "alerts":
                put_alert(db, decode_as("fraud_alert", record.value))
        except InvalidEvent as exc:
            self.dead_letter_log.note(
                record.topic, record.partition, record.offset, "read-model", exc.message
            )

    def _put_admitted_purchase(self, db: sqlite3.Connection, record: Record) -> None:
        """Only what the detector accepts: a purchase it dead-letters is never shown."""
        purchase, stage, reason = admit(record, self.admission)
        if purchase is None:
            self.dead_letter_log.note(record.topic, record.partition, record.offset, stage, reason)
            return
        put_purchase(db, purchase, record.value)

    def prune(self, older_than: datetime) -> int:
        """Drop purchases and decisions past the log's retention; alerts are kept."""
        cutoff = to_ms(older_than)
        with self._tx() as db:
            gone = db.execute("delete from purchases where occurred_ms < ?", (cutoff,)).rowcount
            gone += db.execute("delete from decisions where decided_ms < ?", (cutoff,)).rowcount
            rule_hits.prune(db, cutoff)
            gone += db.execute("delete from traffic where minute < ?", (cutoff // 60_000,)).rowcount
        return gone

    # -- alerts ------------------------------------------------------------------------

    def list_alerts(
        self, flt: AlertFilter, *, limit: int, offset: int = 0, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """A page of alerts, newest first, the total matching, and the next page's cursor."""
        where, params = flt.where()
        (total,) = self.query(f"select count(*) from alerts where {where}", params)[0]
        page_where, page_params = where, list(params)
        if cursor is not None:
            decided_ms, alert_id = decode_cursor(cursor)
            page_where += " and (decided_ms < ? or (decided_ms = ? and alert_id < ?))"
            page_params += [decided_ms, decided_ms, alert_id]
            offset = 0
        rows = self.query(
            f"select {ALERT_COLUMNS} from alerts where {page_where}"
            " order by decided_ms desc, alert_id desc limit ? offset ?",
            [*page_params, limit + 1, offset],
        )
        items = [alert_item(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last[13], last[0])
        return items, int(total), next_cursor

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self.query(f"select {ALERT_COLUMNS} from alerts where alert_id = ?", [alert_id])
        return alert_item(rows[0]) if rows else None

    def event_of(self, event_id: str) -> dict[str, Any] | None:
        """The original purchase, when the store saw it on purchase-events."""
        rows = self.query("select raw_json from purchases where event_id = ?", [event_id])
        return json.loads(rows[0][0]) if rows else None

    def decision_of(self, event_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "select probability, band, model_version, top_features, latency_ms, decided_ms"
            " from decisions where event_id = ?",
            [event_id],
        )
        if not rows:
            return None
        prob, band, version, features, latency, decided = rows[0]
        return {
            "probability": prob,
            "band": band,
            "model_version": version,
            "top_features": json.loads(features),
            "latency_ms": json.loads(latency),
            "decided_at": from_ms(decided),
        }

    def user_history(self, user_id: str, *, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        """The user's recent purchases with the decision on each (either may be missing)."""
        rows = self.query(
            """
            select event_id, order_id, amount, currency, source, occurred_ms,
                   max(payment_method), max(country), max(band), max(probability), max(decided_ms)
            from (
                select event_id, order_id, amount, currency, source, occurred_ms,
                       payment_method, country,
                       null as band, null as probability, null as decided_ms
                from purchases where user_id = ?
                union all
                select event_id, order_id, amount, currency, source, occurred_ms, null, null,
                       band, probability, decided_ms
                from decisions where user_id = ?
            )
            group by event_id
            order by occurred_ms desc, event_id desc
            limit ?
            """,
            [user_id, user_id, limit],
        )
        keys = (
            "event_id",
            "order_id",
            "amount",
            "currency",
            "source",
            "occurred_at",
            "payment_method",
            "country",
            "band",
            "probability",
            "decided_at",
        )
        history = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["occurred_at"] = from_ms(item["occurred_at"])
            item["decided_at"] = from_ms(item["decided_at"])
            history.append(item)
        return history

    def record_review(self, review: Review) -> dict[str, Any]:
        """Mark the alert reviewed (a later review replaces an earlier one)."""
        with self._tx() as db:
            cur = db.execute(
                "update alerts set status = 'reviewed', verdict = ?, note = ?, reviewer = ?,"
                " reviewed_ms = ?"
                " where alert_id = ?",
                (
                    review.verdict,
                    review.note,
                    review.reviewer,
                    to_ms(review.reviewed_at),
                    review.alert_id,
                ),
            )
            if cur.rowcount == 0:
                raise UnknownAlert(f"no alert {review.alert_id!r}")
        alert = self.get_alert(review.alert_id)
        assert alert is not None
        return alert

    def review_stats(self, *, since: datetime | None = None) -> dict[str, Any]:
        """Review counts and the false-positive rate: false positives / reviewed alerts.

        With ``since``, only reviews made since then count (the open count is always
        the current queue), so the rate can recover after the model improves.
        """
        rows = dict(
            self.query(
                "select coalesce(verdict, 'open'), count(*) from alerts"
                " where verdict is null or reviewed_ms >= ?"
                " group by coalesce(verdict, 'open')",
                [to_ms(since) if since is not None else 0],
            )
        )
        confirmed = int(rows.get("confirmed_fraud", 0))
        false_pos = int(rows.get("false_positive", 0))
        reviewed = confirmed + false_pos
        return {
            "alerts": sum(int(v) for v in rows.values()),
            "open": int(rows.get("open", 0)),
            "reviewed": reviewed,
            "confirmed_fraud": confirmed,
            "false_positive": false_pos,
            "false_positive_rate": (false_pos / reviewed) if reviewed else None,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
