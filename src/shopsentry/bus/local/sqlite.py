"""The SQLite file behind the embedded log: schema, connections and error mapping.

One database in WAL mode holds everything (topics, record batches, consumer groups,
committed offsets), so a produce, a commit and a rebalance are each one short ACID
transaction, and several processes can share a data dir: SQLite's file locks order the
writers, WAL lets readers run beside them, and a process killed with ``kill -9`` leaves
nothing half-written (an uncommitted transaction is rolled back on the next open).

Durability (``fsync`` policy) is SQLite's ``synchronous`` setting per connection:

- ``batch`` (default): ``synchronous=FULL`` for producers, the WAL is fsynced at every
  ``Producer.flush()``: acknowledged records survive power loss. Consumer offset commits
  and group coordination use ``synchronous=NORMAL``: they survive ``kill -9``; a power
  cut may undo the last commits, which redelivers records (at-least-once), never loses.
- ``always``: every record is committed and fsynced as it is sent; offset commits are
  fsynced too.
- ``never``: ``synchronous=NORMAL``, the WAL is fsynced only at checkpoints. Survives
  ``kill -9`` of any process (the data is in the OS page cache), not a power cut.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from shopsentry.errors import BusError, TerminalError, TransientError

logger = logging.getLogger(__name__)

DB_NAME = "log.sqlite"
# A batch row's id is ``partition_id * PARTITION_SPAN + base_offset``: rows of one
# partition are contiguous in the table's B-tree and ordered by offset, with no index.
PARTITION_SPAN = 1 << 40
BUSY_TIMEOUT_S = 30.0

FsyncPolicy = Literal["batch", "always", "never"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    replication_factor INTEGER NOT NULL,
    retention_ms INTEGER NOT NULL,
    min_insync_replicas INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    end_offset INTEGER NOT NULL DEFAULT 0,
    UNIQUE (topic, partition)
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    record_count INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    rank INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    session_timeout_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE TABLE IF NOT EXISTS targets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE IF NOT EXISTS owners (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
"""


class LogStoreError(TerminalError, BusError):
    """The log's database file is unreadable (corrupt, not a database, no permission)."""


class LogBusy(TransientError, BusError):
    """Another process held the log's write lock for longer than the busy timeout."""


def describe_sqlite_error(exc: sqlite3.Error, path: Path) -> BusError:
    """Turn a SQLite error into one line that says what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LogBusy(
            f"event log {path} stayed locked for over {BUSY_TIMEOUT_S:.0f}s ({text})",
            hint="another process holds it; retry, or stop the stuck process",
        )
    return LogStoreError(
        f"event log {path} cannot be used: {text}",
        hint="check the file's permissions and disk space, or move it aside to start a new log",
    )


P = ParamSpec("P")
T = TypeVar("T")


def sqlite_errors(method: Callable[P, T]) -> Callable[P, T]:
    """Decorate a method of an object with a ``_path`` so SQLite errors become BusErrors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            path = getattr(args[0], "_path", Path("?"))
            raise describe_sqlite_error(exc, path) from exc

    return wrapper


def connect(
    directory: Path, fsync: FsyncPolicy = "batch", *, durable: bool = True
) -> sqlite3.Connection:
    """Open (and on first use create) the log database in ``directory``.

    ``durable=False`` is for connections whose writes need not survive a power cut
    (heartbeats): they use ``synchronous=NORMAL`` whatever the policy.
    """
    path = directory / DB_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LogStoreError(
            f"cannot create the log directory {directory}: {exc.strerror}",
            hint="pick a writable --data-dir",
        ) from exc
    try:
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        # 16 KiB pages: a record batch (< 128 KiB, see the producer) spans a few pages,
        # and a commit writes every page it touched to the WAL whole. With 64 KiB pages a
        # low-rate flush (a few records over many partitions, one leaf page each) wrote
        # ~1 MB per commit: 16 KiB halved a flush's CPU and the detector's p50/p99 at
        # 1,000 purchases/s, with the same bulk throughput (benchmarks/bench_log.py).
        # Only takes effect when the file is created: an older log keeps its pages.
        conn.execute("PRAGMA page_size=16384")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LogStoreError(
                f"event log {path} cannot use WAL mode (got {mode})",
                hint="put the data dir on a local disk",
            )
        sync = "FULL" if durable and fsync != "never" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA wal_autocheckpoint=1000")  # pages: ~64 MB of WAL
        conn.execute("PRAGMA cache_size=-16000")
        with transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _add_missing_columns(conn)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, path) from exc
    return conn


# Columns added after the first release: a log created before them gets them on open.
_ADDED_COLUMNS = (
    ("topics", "cleanup_policy", "TEXT NOT NULL DEFAULT 'delete'"),
    # Compaction's checkpoint (Kafka's cleaner offset): records below it are compacted.
    ("partitions", "clean_offset", "INTEGER NOT NULL DEFAULT 0"),
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at once (``BEGIN IMMEDIATE``), so
    reads inside it (e.g. the next offset) cannot be invalidated by another writer."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def batch_id(partition_id: int, offset: int) -> int:
    return partition_id * PARTITION_SPAN + offset
