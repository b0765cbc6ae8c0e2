"""The embedded log's producer: buffer in memory, append whole batches in one transaction.

``send`` only appends the record's fields to its partition's column buffer; ``flush`` (or the
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
from collections.abc import Callable, Sequence
from pathlib import Path

from shopsentry.bus.local import codec, compaction
from shopsentry.bus.local.sqlite import FsyncPolicy, batch_id, connect, sqlite_errors, transaction
from shopsentry.bus.local.topics import TopicMeta, apply_retention, load_topic, now_ms
from shopsentry.bus.partitioner import partition_for
from shopsentry.errors import BusError, ProduceError

logger = logging.getLogger(__name__)
_time_ns = time.time_ns

Headers = tuple[tuple[str, bytes], ...]
_KEY_CACHE = 200_000  # keys whose partition a producer remembers, per topic
_Appenders = tuple[
    Callable[[int], None],
    Callable[[bytes | None], None],
    Callable[[bytes], None],
    Callable[[Headers | None], None],
]


class _Columns:
    """One partition's records waiting for a flush, as parallel lists.

    Columns instead of a tuple per record: nothing the garbage collector tracks is
    allocated per record, and a batch is encoded straight from the lists. Lock-free
    with the background flusher: ``send`` appends to ``headers`` last, a flush takes the
    first ``len(headers)`` entries of every column, and only the flush removes entries
    (from the front), so each list operation being atomic is enough.
    """

    __slots__ = ("append", "headers", "keys", "timestamps", "values")

    def __init__(self) -> None:
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []
        self.headers: list[Headers | None] = []
        self.append: _Appenders = (
            self.timestamps.append,
            self.keys.append,
            self.values.append,
            self.headers.append,
        )

    def take(self) -> tuple[list[int], list[bytes | None], list[bytes], list[Headers | None]]:
        n = len(self.headers)
        taken = (self.timestamps[:n], self.keys[:n], self.values[:n], self.headers[:n])
        for column in (self.timestamps, self.keys, self.values, self.headers):
            del column[:n]
        return taken

    def put_back(
        self, taken: tuple[list[int], list[bytes | None], list[bytes], list[Headers | None]]
    ) -> None:
        """Return records whose flush failed to the front, in order (headers last)."""
        ts, keys, values, headers = taken
        self.timestamps[0:0] = ts
        self.keys[0:0] = keys
        self.values[0:0] = values
        self.headers[0:0] = headers


class LocalProducer:
    """A producer on the embedded log; safe to share between threads."""

    def __init__(
        self,
        directory: Path,
        fsync: FsyncPolicy = "batch",
        *,
        linger_ms: int = 5,
        batch_records: int = 2_000,
        batch_bytes: int = 96 * 1024,
        buffer_records: int = 50_000,
        retention_check_ms: int = 60_000,
    ) -> None:
        self._path = directory
        self._fsync = fsync
        self._conn = connect(directory, fsync)
        self._linger_s = linger_ms / 1000
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._buffer_records = 1 if fsync == "always" else buffer_records
        self._retention_check_ms = retention_check_ms
        # Like a broker's retention check (Kafka: every 5 min), not at once: a short run
        # that back-fills old timestamps keeps its records until a later check.
        self._last_retention_ms = now_ms()
        self._topics: dict[str, TopicMeta] = {}
        # topic -> (partition count, each partition's column appenders); see _Columns.
        self._routes: dict[str, tuple[int, list[_Appenders], dict[bytes, _Appenders]]] = {}
        self._buffers: list[tuple[int, _Columns]] = []  # (partition row id, buffer)
        self._count = 0  # records sent since the last flush (a trigger, not an exact count)
        self._idle = True  # the flusher sleeps until a record arrives
        self._sticky: dict[str, list[int]] = {}  # topic -> [partition, records sent to it]
        self._write_lock = threading.Lock()  # one flush at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._closing = threading.Event()  # interrupts the flusher's linger wait
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
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        partitions, appenders, by_key = route
        if value.__class__ is not bytes and not isinstance(value, bytes):
            raise TypeError(f"record value must be bytes, not {type(value).__name__}")
        target: _Appenders | None
        if partition is None:
            if key is None:
                target = appenders[self._sticky_partition(topic, partitions)]
            else:
                # The key's partition buffer, remembered: one dict lookup per record.
                target = by_key.get(key)
                if target is None:
                    if len(by_key) >= _KEY_CACHE:
                        by_key.clear()
                    target = by_key[key] = appenders[partition_for(key, partitions)]
        elif 0 <= partition < partitions:
            target = appenders[partition]
        else:
            raise BusError(
                f"topic {topic!r} has no partition {partition}",
                hint=f"it has partitions 0..{partitions - 1}",
            )
        add_ts, add_key, add_value, add_headers = target
        add_ts(_time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms)
        add_key(key)
        add_value(value)
        add_headers(tuple(headers) if headers else None)  # last: marks the record complete
        self._count += 1
        if self._idle:
            self._idle = False
            self._wake.set()
        if self._count >= self._buffer_records:
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
    def _route(self, topic: str) -> tuple[int, list[_Appenders], dict[bytes, _Appenders]]:
        if self._closed:
            raise BusError("producer is closed")
        meta = load_topic(self._conn, topic)
        with self._write_lock:
            buffers = [_Columns() for _ in range(meta.partitions)]
            self._topics[topic] = meta
            self._buffers += list(zip(meta.partition_ids, buffers, strict=True))
            by_key: dict[bytes, _Appenders] = {}
            route = (meta.partitions, [b.append for b in buffers], by_key)
            self._routes[topic] = route
        return route

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
        self._count = 0
        for state in self._sticky.values():
            state[1] = self._batch_records  # the next keyless record starts a new batch
        taken = []
        work = []
        for pid, buffer in self._buffers:
            if not buffer.headers:
                continue
            columns = buffer.take()
            taken.append((buffer, columns))
            timestamps, keys, values, headers = columns
            n = len(values)
            size = self._batch_size(keys, values)
            batches = []
            for start in range(0, n, size):
                end = start + size
                ts = timestamps[start:end]
                hs = headers[start:end]
                payload = codec.encode_batch(
                    ts, keys[start:end], values[start:end], hs if any(hs) else None
                )
                batches.append((len(ts), max(ts), payload))
            work.append((pid, batches))
        if not work:
            return
        try:
            self._append(work)
        except Exception as exc:
            for buffer, columns in taken:  # back in front, in order, for the next flush
                buffer.put_back(columns)
            failed = sum(len(columns[2]) for _, columns in taken)
            self._count += failed
            if isinstance(exc, BusError):
                raise ProduceError(exc.message, failed=failed, hint=exc.hint) from exc
            raise
        self._maybe_apply_retention()

    def _batch_size(self, keys: list[bytes | None], values: list[bytes]) -> int:
        """Records per batch: ``batch_records``, fewer if that would pass ``batch_bytes``.

        Batches stay under glibc's mmap threshold (128 KiB): a bigger payload is mapped
        fresh and page-faulted in at every encode and every read, which costs more than
        the SQLite row it saves (measured: 2,000-record batches of 450-byte events
        consume at half the speed of ~100 KiB ones).
        """
        sample = min(len(values), 32)
        size = sum(map(len, values[:sample])) + sum(len(k or b"") for k in keys[:sample])
        mean = size / sample + 16
        return max(1, min(self._batch_records, int(self._batch_bytes // mean)))

    @sqlite_errors
    def _append(self, work: list[tuple[int, list[tuple[int, int, bytes]]]]) -> None:
        conn = self._conn
        pids = sorted({pid for pid, _ in work})
        marks = ",".join("?" * len(pids))
        with transaction(conn):
            # Three statements however many partitions the flush touches: a low-rate
            # flush spreads a few records over many partitions.
            ends = dict(
                conn.execute(
                    f"SELECT id, end_offset FROM partitions WHERE id IN ({marks})",
                    pids,
                ).fetchall()
            )
            rows = []
            for pid, batches in work:  # a partition may come more than once
                end = ends[pid]
                for count, max_ts, payload in batches:
                    rows.append((batch_id(pid, end), count, max_ts, payload))
                    end += count
                ends[pid] = end
            conn.executemany("INSERT INTO batches VALUES (?, ?, ?, ?)", rows)
            conn.executemany(
                "UPDATE partitions SET end_offset = ? WHERE id = ?",
                [(end, pid) for pid, end in ends.items()],
            )

    def _maybe_apply_retention(self) -> None:
        now = now_ms()
        if now - self._last_retention_ms < self._retention_check_ms:
            return
        self._last_retention_ms = now
        try:
            self._apply_retention(now, list(self._topics))
        except BusError as exc:  # retention can wait for the next flush
            logger.warning("retention check failed: %s", exc.one_line())

    @sqlite_errors
    def _apply_retention(self, at_ms: int, topics: list[str]) -> int:
        removed = apply_retention(self._conn, at_ms, topics)
        return removed + compaction.compact(self._conn, topics, when_dirty=True)

    def _linger_loop(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            if self._closing.wait(self._linger_s):
                return  # close() flushes what is left
            self._wake.clear()
            self._idle = True
            if self._closed:
                return
            try:
                self.flush()
            except BusError as exc:
                logger.warning("background flush failed, will retry: %s", exc.one_line())
                if self._closing.wait(0.5):
                    return
                self._wake.set()

    def close(self) -> None:
        """Flush what is queued and release the database connection."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._routes.clear()
            self._closing.set()
            self._wake.set()
            self._flusher.join(timeout=5)
            with self._write_lock:
                self._conn.close()

    def __enter__(self) -> LocalProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
