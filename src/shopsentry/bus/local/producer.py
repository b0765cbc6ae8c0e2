"""The embedded log's producer: buffer in memory, append whole batches in one transaction.

``send`` only appends a tuple to the buffer of the record's partition; ``flush`` (or the
background flusher after ``linger_ms``, as Kafka's ``linger.ms``) packs each partition's
records into batches (:mod:`.codec`), then takes the write lock just long enough to read
each partition's end offset, insert the batches and move the end offset. When ``flush``
returns the transaction is committed with the connection's fsync policy: the records are
acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from shopsentry.bus.local import codec
from shopsentry.bus.local.store import FsyncPolicy, batch_id, connect, sqlite_errors, transaction
from shopsentry.bus.local.topics import TopicMeta, apply_retention, load_topic, now_ms
from shopsentry.bus.partitioner import partition_for
from shopsentry.errors import BusError, ProduceError

logger = logging.getLogger(__name__)

_Pending = tuple[int, bytes | None, bytes, tuple[tuple[str, bytes], ...] | None]


class LocalProducer:
    """A producer on the embedded log; safe to share between threads."""

    def __init__(
        self,
        directory: Path,
        fsync: FsyncPolicy = "batch",
        *,
        linger_ms: int = 5,
        batch_records: int = 2_000,
        buffer_records: int = 50_000,
        retention_check_ms: int = 60_000,
    ) -> None:
        self._path = directory
        self._fsync = fsync
        self._conn = connect(directory, fsync)
        self._linger_s = linger_ms / 1000
        self._batch_records = batch_records
        self._buffer_records = 1 if fsync == "always" else buffer_records
        self._retention_check_ms = retention_check_ms
        # Like a broker's retention check (Kafka: every 5 min), not at once: a short run
        # that back-fills old timestamps keeps its records until a later check.
        self._last_retention_ms = now_ms()
        self._topics: dict[str, TopicMeta] = {}
        # topic -> partition -> records waiting for the next flush
        self._pending: dict[str, dict[int, list[_Pending]]] = {}
        self._count = 0
        self._sticky: dict[str, list[int]] = {}  # topic -> [partition, records sent to it]
        self._lock = threading.Lock()  # guards the buffer (short)
        self._write_lock = threading.Lock()  # orders flushes: taken before the buffer swap
        self._wake = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(
            target=self._linger_loop, name="shopsentry-log-flusher", daemon=True
        )
        self._flusher.start()

    # -- sending ------------------------------------------------------------------------
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
        """Queue one record; it is acknowledged once :meth:`flush` returns."""
        meta = self._topics.get(topic)
        if meta is None:
            meta = self._load(topic)
        if not isinstance(value, bytes):
            raise TypeError(f"record value must be bytes, not {type(value).__name__}")
        if partition is None:
            if key is None:
                partition = self._sticky_partition(topic, meta.partitions)
            else:
                partition = partition_for(key, meta.partitions)
        elif not 0 <= partition < meta.partitions:
            raise BusError(
                f"topic {topic!r} has no partition {partition}",
                hint=f"it has partitions 0..{meta.partitions - 1}",
            )
        record = (
            time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms,
            key,
            value,
            tuple(headers) if headers else None,
        )
        with self._lock:
            if self._closed:
                raise BusError("producer is closed")
            by_partition = self._pending.get(topic)
            if by_partition is None:
                by_partition = self._pending[topic] = {}
            queue = by_partition.get(partition)
            if queue is None:
                by_partition[partition] = [record]
            else:
                queue.append(record)
            self._count += 1
            count = self._count
        if count == 1:
            self._wake.set()
        if count >= self._buffer_records:
            self.flush()

    def _sticky_partition(self, topic: str, partitions: int) -> int:
        """Keyless records stick to one partition for a batch, then move on (Kafka's
        sticky partitioner), so they form full batches instead of one per partition."""
        state = self._sticky.get(topic)
        if state is None:
            state = self._sticky[topic] = [int(time.time_ns()) % partitions, 0]
        state[1] += 1
        if state[1] > self._batch_records:
            state[0] = (state[0] + 1) % partitions
            state[1] = 1
        return state[0]

    @sqlite_errors
    def _load(self, topic: str) -> TopicMeta:
        meta = load_topic(self._conn, topic)
        self._topics[topic] = meta
        return meta

    # -- flushing -----------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Make every record sent so far durable, or raise ProduceError (they stay queued)."""
        if not self._write_lock.acquire(timeout=max(timeout, 0.001)):
            raise ProduceError(
                f"flush did not finish within {timeout}s",
                failed=self._count,
                hint="the log is busy; retry",
            )
        try:
            self._flush_locked()
        finally:
            self._write_lock.release()

    def _flush_locked(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            count, self._count = self._count, 0
            for state in self._sticky.values():
                state[1] = self._batch_records  # next keyless record starts a new batch elsewhere
        if not count:
            return
        work = []
        size = self._batch_records
        for topic, by_partition in pending.items():
            meta = self._topics[topic]
            for partition, records in by_partition.items():
                batches = []
                for start in range(0, len(records), size):
                    chunk = records[start : start + size]
                    timestamps, keys, values, headers = zip(*chunk, strict=True)
                    payload = codec.encode_batch(timestamps, keys, values, headers)
                    batches.append((len(chunk), max(timestamps), payload))
                work.append((meta.partition_ids[partition], batches))
        try:
            self._append(work)
        except Exception as exc:
            with self._lock:  # put the records back in front, in order, for a retry
                for topic, by_partition in pending.items():
                    current = self._pending.setdefault(topic, {})
                    for partition, records in by_partition.items():
                        current[partition] = records + current.get(partition, [])
                self._count += count
            if isinstance(exc, BusError):
                raise ProduceError(exc.message, failed=count, hint=exc.hint) from exc
            raise
        self._maybe_apply_retention(pending)

    @sqlite_errors
    def _append(self, work: list[tuple[int, list[tuple[int, int, bytes]]]]) -> None:
        conn = self._conn
        with transaction(conn):
            for pid, batches in work:
                end = conn.execute(
                    "SELECT end_offset FROM partitions WHERE id = ?", (pid,)
                ).fetchone()[0]
                rows = []
                for count, max_ts, payload in batches:
                    rows.append((batch_id(pid, end), count, max_ts, payload))
                    end += count
                conn.executemany("INSERT INTO batches VALUES (?, ?, ?, ?)", rows)
                conn.execute("UPDATE partitions SET end_offset = ? WHERE id = ?", (end, pid))

    def _maybe_apply_retention(self, pending: dict[str, dict[int, list[_Pending]]]) -> None:
        now = now_ms()
        if now - self._last_retention_ms < self._retention_check_ms:
            return
        self._last_retention_ms = now
        try:
            self._apply_retention(now, list(pending))
        except BusError as exc:  # retention can wait for the next flush
            logger.warning("retention check failed: %s", exc.one_line())

    @sqlite_errors
    def _apply_retention(self, at_ms: int, topics: list[str]) -> int:
        return apply_retention(self._conn, at_ms, topics)

    def _linger_loop(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            time.sleep(self._linger_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except BusError as exc:
                logger.warning("background flush failed, will retry: %s", exc.one_line())
                time.sleep(0.5)
                self._wake.set()

    def close(self) -> None:
        """Flush what is queued and release the database connection."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
            self._wake.set()
            self._flusher.join(timeout=5)
            with self._write_lock:
                self._conn.close()

    def __enter__(self) -> LocalProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
