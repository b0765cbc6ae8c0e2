"""Who changed which rule or list entry, when, and what it was before and after.

The control topic keeps only the latest state of each key once compacted; the audit
keeps every change. :class:`SqliteAudit` is a small table in a SQLite file beside the
API's other stores.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class AuditRecord:
    subject: str  # the control-topic key: rule:<name> or entry:<list>:<entity>:<value>
    action: str  # save, activate, shadow, disable, add, remove, import
    changed_by: str
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    version: int | None = None  # the rule-set version the change produced, when known


class Audit(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def history(self, subject: str, *, limit: int = 100) -> list[AuditRecord]: ...

    def close(self) -> None: ...


class SqliteAudit:
    """The audit table in one SQLite file (WAL; safe to share between request threads)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute(
            """
            create table if not exists rules_audit (
                id integer primary key autoincrement,
                subject text not null,
                action text not null,
                changed_by text not null,
                changed_at text not null,
                before text,
                after text,
                version integer
            )
            """
        )
        self._db.execute(
            "create index if not exists rules_audit_subject on rules_audit (subject, id)"
        )

    def record(self, records: Sequence[AuditRecord]) -> None:
        rows = [
            (r.subject, r.action, r.changed_by, r.changed_at.isoformat(),
             _dump(r.before), _dump(r.after), r.version)
            for r in records
        ]  # fmt: skip
        with self._lock, self._db:  # one transaction: committed, or rolled back on error
            self._db.executemany(
                "insert into rules_audit (subject, action, changed_by, changed_at, before,"
                " after, version) values (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def history(self, subject: str, *, limit: int = 100) -> list[AuditRecord]:
        """The latest ``limit`` changes of ``subject``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select subject, action, changed_by, changed_at, before, after, version"
                " from rules_audit where subject = ? order by id desc limit ?",
                (subject, limit),
            ).fetchall()
        return [
            AuditRecord(s, a, who, datetime.fromisoformat(at), _load(b), _load(af), v)
            for s, a, who, at, b, af, v in reversed(rows)
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dump(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    loaded: dict[str, Any] = orjson.loads(text)
    return loaded
