"""The embedded log's consumer: group membership, rebalancing in ``poll``, batched reads.

A background thread heartbeats (so a slow batch of work does not cost the partitions,
as with Kafka's heartbeat thread) and removes members whose session timed out. The
rebalance itself runs inside :meth:`LocalConsumer.poll`, on the caller's thread, so the
``on_revoke`` / ``on_assign`` callbacks run where the application's state lives:
``on_revoke`` before a partition is given up (its commits still succeed there),
``on_assign`` after new partitions are claimed, with their positions already set.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from shopsentry.bus.base import RebalanceCallback, Record, TopicPartition
from shopsentry.bus.local import codec, groups
from shopsentry.bus.local.sqlite import (
    PARTITION_SPAN,
    FsyncPolicy,
    LogStoreError,
    connect,
    describe_sqlite_error,
    sqlite_errors,
)
from shopsentry.bus.local.topics import TopicMeta, load_topic
from shopsentry.errors import BusError

logger = logging.getLogger(__name__)

_FETCH_BATCHES = 16
# The idle wait between fetches backs off from 1 ms to a cap that depends on how recently
# records came: while traffic is flowing (records within _BUSY_WINDOW_S) the cap is 2 ms,
# so an event waits ~1 ms on average for the next look instead of ~10 ms (20 ms cap);
# once the log has been quiet for a while the cap goes back to 20 ms, so an idle
# consumer costs ~50 cheap SQLite reads a second, not 500.
_MAX_IDLE_SLEEP_S = 0.02
_BUSY_IDLE_SLEEP_S = 0.002
_BUSY_WINDOW_S = 1.0


class _PartitionState:
    """Where a consumer is in one partition, and records decoded but not returned yet."""

    __slots__ = ("buffer", "hi", "lo", "position")

    def __init__(self, partition_id: int, position: int) -> None:
        self.lo = partition_id * PARTITION_SPAN
        self.hi = self.lo + PARTITION_SPAN
        self.position = position
        self.buffer: list[Record] = []


class LocalConsumer:
    """A consumer on the embedded log. Use it from one thread (like a Kafka consumer)."""

    def __init__(
        self,
        directory: Path,
        fsync: FsyncPolicy,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest"):
            raise BusError(
                f"auto_offset_reset must be 'earliest' or 'latest', not {auto_offset_reset!r}"
            )
        if not topics:
            raise BusError("a consumer needs at least one topic")
        self._path = directory
        self._group = group_id
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._reset = auto_offset_reset
        self._session_timeout_ms = session_timeout_ms
        self._max_poll_interval_s = max_poll_interval_ms / 1000
        # Offset commits are not fsynced (except with fsync="always"): they survive kill -9
        # of any process (WAL), and losing the last ones to a power cut only means
        # records are delivered again (at-least-once), never lost. An fsync per commit
        # would otherwise cost more than reading the records.
        self._conn = connect(directory, fsync, durable=fsync == "always")
        self._closed = False
        try:
            self._metas: dict[str, TopicMeta] = {
                t: load_topic(self._conn, t) for t in dict.fromkeys(topics)
            }
        except BaseException:
            self._conn.close()
            raise
        self._states: dict[TopicPartition, _PartitionState] = {}
        # SQLite's data_version when a fetch last came back empty: while no other
        # connection has committed since, nothing new can be read (see poll).
        self._empty_at: int | None = None
        self._rr = 0
        self._generation = -1
        self._waiting: set[TopicPartition] = set()
        self._next_claim = 0.0
        self._last_poll = time.monotonic()
        self._last_records_at = float("-inf")
        self._fenced = threading.Event()
        self._stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self.member_id = f"{client_id or 'consumer'}-{uuid.uuid4().hex[:12]}"
        if group_id is None:
            self._unassigned_all = True
            return
        self._unassigned_all = False
        self._client_id = client_id or "consumer"
        self._join()
        self._hb_conn = connect(directory, fsync, durable=False)
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"shopsentry-heartbeat-{self.member_id}", daemon=True
        )
        self._heartbeat_thread.start()

    @sqlite_errors
    def _join(self) -> None:
        assert self._group is not None
        groups.join(
            self._conn,
            self._group,
            self.member_id,
            self._client_id,
            list(self._metas),
            self._session_timeout_ms,
        )
        self._fenced.clear()

    # -- membership ---------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        assert self._group is not None
        interval = max(self._session_timeout_ms / 4000, 0.05)
        while not self._stop.wait(interval):
            if time.monotonic() - self._last_poll > self._max_poll_interval_s:
                logger.warning(
                    "member %s did not poll for %.0fs: letting its session expire",
                    self.member_id,
                    self._max_poll_interval_s,
                )
                continue
            try:
                if not groups.heartbeat(self._hb_conn, self._group, self.member_id):
                    self._fenced.set()
                groups.expire(self._hb_conn, self._group)
            except sqlite3.Error as exc:  # keep going; the next beat may get through
                logger.warning(
                    "heartbeat of %s failed: %s",
                    self.member_id,
                    describe_sqlite_error(exc, self._path).one_line(),
                )

    def _sync_group(self) -> None:
        """Apply the group's current target assignment: revoke, release, claim, assign."""
        assert self._group is not None
        if self._fenced.is_set():
            lost = sorted(self._states)
            logger.warning(
                "member %s was removed from group %s; partitions lost: %s",
                self.member_id,
                self._group,
                lost,
            )
            try:
                if lost and self._on_revoke is not None:
                    self._on_revoke(lost)  # commits in here raise CommitFailed: they are lost
            finally:
                self._states.clear()
                self._join()
                self._generation = -1
        current = groups.generation(self._conn, self._group)
        if current == self._generation and (
            not self._waiting or time.monotonic() < self._next_claim
        ):
            return
        gen, target, present = groups.targets(self._conn, self._group, self.member_id)
        if not present:
            self._fenced.set()
            self._sync_group()
            return
        revoke = sorted(tp for tp in self._states if tp not in target)
        if revoke:
            if self._on_revoke is not None:
                self._on_revoke(revoke)
            groups.release(self._conn, self._group, self.member_id, revoke)
            for tp in revoke:
                del self._states[tp]
        wanted = target - self._states.keys()
        claimed: set[TopicPartition] = set()
        if wanted:
            claimed = groups.claim(self._conn, self._group, self.member_id, wanted)
            self._start(claimed)
        self._generation = gen
        self._waiting = wanted - claimed
        self._next_claim = time.monotonic() + 0.02
        if revoke or claimed:
            logger.info(
                "member %s of %s: revoked %s, assigned %s, waiting for %s",
                self.member_id,
                self._group,
                revoke,
                sorted(claimed),
                sorted(self._waiting),
            )
        if claimed and self._on_assign is not None:
            self._on_assign(sorted(claimed))

    def _start(self, tps: set[TopicPartition]) -> None:
        """Positions of newly owned partitions: the committed offset, else the reset policy."""
        committed = groups.committed(self._conn, self._group, sorted(tps)) if self._group else {}
        for tp in tps:
            pid = self._metas[tp.topic].partition_ids[tp.partition]
            start, end = self._conn.execute(
                "SELECT start_offset, end_offset FROM partitions WHERE id = ?", (pid,)
            ).fetchone()
            offset = committed.get(tp)
            if offset is None:
                offset = start if self._reset == "earliest" else end
            elif offset < start:
                logger.warning(
                    "%s: committed offset %d was deleted by retention, resuming at %d",
                    tp,
                    offset,
                    start,
                )
                offset = start
            self._states[tp] = _PartitionState(pid, offset)

    # -- reading ------------------------------------------------------------------------
    @sqlite_errors
    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first."""
        self._check_open()
        self._last_poll = time.monotonic()
        deadline = self._last_poll + timeout
        pause = 0.001
        while True:
            version = self._data_version()
            if version != self._empty_at or self._waiting or self._fenced.is_set():
                records = self._sync_and_fetch(max_records)
                self._empty_at = None if records else version
            else:
                records = []  # nobody wrote since the last empty fetch: skip its queries
            now = time.monotonic()
            if records:
                self._last_poll = self._last_records_at = now
                return records
            if now >= deadline:
                self._last_poll = now
                return records
            time.sleep(min(pause, deadline - now))
            busy = now - self._last_records_at < _BUSY_WINDOW_S
            pause = min(pause * 2, _BUSY_IDLE_SLEEP_S if busy else _MAX_IDLE_SLEEP_S)

    def _data_version(self) -> int:
        """Changes whenever another connection commits to the log (records, group
        changes, offsets, heartbeats, retention): one cheap pragma instead of a fetch's
        query per partition while a consumer waits on an idle log."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _sync_and_fetch(self, max_records: int) -> list[Record]:
        if self._group is not None:
            self._sync_group()
        elif self._unassigned_all:
            self._unassigned_all = False
            every = {
                TopicPartition(t, p)
                for t, meta in self._metas.items()
                for p in range(meta.partitions)
            }
            self._start(every)
            if self._on_assign is not None:
                self._on_assign(sorted(every))
        return self._fetch(max_records)

    def _fetch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        tps = list(self._states)
        if not tps:
            return out
        self._rr = (self._rr + 1) % len(tps)
        behind = self._with_new_records()
        for tp in tps[self._rr :] + tps[: self._rr]:
            need = max_records - len(out)
            if need <= 0:
                break
            state = self._states[tp]
            if not state.buffer:
                if tp not in behind:
                    continue
                self._read(tp, state, need)
                if not state.buffer:
                    continue
            buffer = state.buffer
            if len(buffer) <= need:
                out += buffer
                state.buffer = []
            else:
                out += buffer[:need]
                state.buffer = buffer[need:]
            state.position = out[-1].offset + 1
        return out

    def _with_new_records(self) -> set[TopicPartition]:
        """The partitions (of those with nothing buffered) whose end offset is past this
        consumer's position: one query for all of them, so a poll reads only partitions
        that have something new instead of querying each (at a low rate most have
        nothing)."""
        empty = {
            state.lo // PARTITION_SPAN: tp for tp, state in self._states.items() if not state.buffer
        }
        if not empty:
            return set()
        marks = ",".join("?" * len(empty))
        rows = self._conn.execute(
            f"SELECT id, end_offset FROM partitions WHERE id IN ({marks})",
            tuple(empty),
        ).fetchall()
        states = self._states
        return {empty[pid] for pid, end in rows if end > states[empty[pid]].position}

    def _read(self, tp: TopicPartition, state: _PartitionState, need: int) -> None:
        """Decode the batches from ``state.position`` on until ``need`` records are buffered."""
        key = state.lo + state.position
        rows = self._conn.execute(
            "SELECT id, payload FROM batches WHERE id >= coalesce("
            "(SELECT max(id) FROM batches WHERE id >= ? AND id <= ?), ?) "
            "AND id < ? ORDER BY id LIMIT ?",
            (state.lo, key, state.lo, state.hi, _FETCH_BATCHES),
        )
        buffer: list[Record] = []
        base = state.position
        try:
            for batch, payload in rows:
                base = batch - state.lo
                skip = state.position - base
                if skip >= codec.batch_count(payload):
                    continue  # the batch before the position, already consumed
                buffer += codec.decode_batch(payload, tp.topic, tp.partition, base, max(skip, 0))
                if len(buffer) >= need:
                    break
        except (ValueError, struct.error, IndexError) as exc:
            raise LogStoreError(
                f"record batch of {tp.topic}[{tp.partition}] at offset {base} is damaged: {exc}",
                hint=f"skip it with seek() past offset {base}, or restore the log from a backup",
            ) from exc
        finally:
            rows.close()
        state.buffer = buffer

    # -- offsets ------------------------------------------------------------------------
    @sqlite_errors
    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        """Commit ``offsets`` (next offsets to read) or every owned partition's position.

        Raises CommitFailed for a partition this member no longer owns. Always synchronous
        (a local transaction): ``asynchronous`` is accepted for the interface's sake."""
        self._check_open()
        if self._group is None:
            raise BusError(
                "a consumer without a group cannot commit", hint="pass a group_id to consumer()"
            )
        if offsets is None:
            offsets = {tp: state.position for tp, state in self._states.items()}
        if offsets:
            groups.commit(self._conn, self._group, self.member_id, offsets)

    @sqlite_errors
    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None:
            return dict.fromkeys(tps)
        return groups.committed(self._conn, self._group, tps)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._states)

    def position(self, tp: TopicPartition) -> int:
        """The next offset poll would return for ``tp``."""
        return self._owned(tp).position

    def seek(self, tp: TopicPartition, offset: int) -> None:
        state = self._owned(tp)
        state.position = max(int(offset), 0)
        state.buffer = []
        self._empty_at = None

    @sqlite_errors
    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        """Move every owned partition to its first record at or after ``timestamp_ms``
        (the end offset if there is none), like Kafka's ``offsets_for_times``."""
        for tp, state in self._states.items():
            row = self._conn.execute(
                "SELECT id, payload FROM batches "
                "WHERE id >= ? AND id < ? AND max_ts >= ? ORDER BY id LIMIT 1",
                (state.lo, state.hi, timestamp_ms),
            ).fetchone()
            if row is None:
                pid = self._metas[tp.topic].partition_ids[tp.partition]
                offset = self._conn.execute(
                    "SELECT end_offset FROM partitions WHERE id = ?", (pid,)
                ).fetchone()[0]
            else:
                stamps = codec.decode_timestamps(row[1])
                offset = (
                    row[0] - state.lo + next(i for i, ts in enumerate(stamps) if ts >= timestamp_ms)
                )
            state.position = int(offset)
            state.buffer = []
        self._empty_at = None

    def _owned(self, tp: TopicPartition) -> _PartitionState:
        state = self._states.get(TopicPartition(*tp))
        if state is None:
            raise BusError(
                f"{tp.topic}[{tp.partition}] is not assigned to this consumer",
                hint="seek only partitions in assignment()",
            )
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("consumer is closed")

    # -- shutdown -----------------------------------------------------------------------
    def close(self) -> None:
        """Leave the group: ``on_revoke`` runs for every owned partition first."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=10)
        try:
            if self._group is not None:
                owned = sorted(self._states)
                if owned and self._on_revoke is not None and not self._fenced.is_set():
                    self._closed = False  # the callback may still commit
                    try:
                        self._on_revoke(owned)
                    finally:
                        self._closed = True
                self._leave()
        finally:
            self._states.clear()
            self._conn.close()
            if self._group is not None:
                self._hb_conn.close()

    @sqlite_errors
    def _leave(self) -> None:
        assert self._group is not None
        groups.leave(self._conn, self._group, self.member_id)

    def __enter__(self) -> LocalConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
