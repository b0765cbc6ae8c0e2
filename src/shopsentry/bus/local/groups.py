"""Consumer groups of the embedded log, coordinated through the database.

There is no broker to act as group coordinator, so the coordination state lives in
tables every member reads and writes in short transactions:

- ``members``: who is in the group, with a heartbeat time. A member whose heartbeat is
  older than its session timeout is removed by whichever member notices first.
- ``groups.generation`` moves on at every membership change; in the same transaction
  the member that made the change computes the *target* assignment (``targets``) with
  a deterministic, sticky, balanced assignor.
- ``owners``: who actually holds each partition now. A member gives a partition up
  (after ``on_revoke``, where it may still commit) before another may claim it, so two
  members never process the same partition at once (Kafka's cooperative protocol).
- ``offsets``: committed offsets. A commit is accepted only from the partition's
  current owner (fencing), in the same transaction that checks ownership, so a member
  that lost a partition cannot overwrite the new owner's progress.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from shopsentry.bus.base import TopicPartition
from shopsentry.bus.local.sqlite import transaction
from shopsentry.bus.local.topics import now_ms
from shopsentry.errors import CommitFailed

logger = logging.getLogger(__name__)

Assignment = dict[TopicPartition, str]


def assign(
    members: Sequence[tuple[str, Sequence[str]]],
    partition_counts: Mapping[str, int],
    previous: Mapping[TopicPartition, str],
) -> Assignment:
    """Balanced and sticky: per topic, every subscribed member gets ``P // M`` or one
    more partition; members keep what they had as far as that allows.

    ``members`` are in join order; with no history the first members get the extra
    partitions, so 2 members over 3 partitions get {0, 1} and {2}, as in the design.
    """
    result: Assignment = {}
    load = {member: 0 for member, _ in members}
    rank = {member: i for i, (member, _) in enumerate(members)}
    for topic in sorted(partition_counts):
        subscribed = [m for m, topics in members if topic in topics]
        if not subscribed:
            continue
        count = partition_counts[topic]
        held: dict[str, list[int]] = {m: [] for m in subscribed}
        for p in range(count):
            owner = previous.get(TopicPartition(topic, p))
            if owner in held:
                held[owner].append(p)
        base, extra = divmod(count, len(subscribed))
        # Who gets one more: members already holding more keep it; then the least loaded.
        order = sorted(subscribed, key=lambda m: (-len(held[m]), load[m], rank[m]))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
        taken: set[int] = set()
        for m in subscribed:
            keep = held[m][: quota[m]]
            for p in keep:
                result[TopicPartition(topic, p)] = m
            taken.update(keep)
            held[m] = keep
        free = [p for p in range(count) if p not in taken]
        for m in subscribed:
            while len(held[m]) < quota[m]:
                p = free.pop(0)
                held[m].append(p)
                result[TopicPartition(topic, p)] = m
            load[m] += len(held[m])
    return result


def _rebalance(conn: sqlite3.Connection, group: str) -> int:
    """Inside a write transaction: next generation and its target assignment."""
    conn.execute(
        "INSERT INTO groups (group_id, generation) VALUES (?, 1) "
        "ON CONFLICT (group_id) DO UPDATE SET generation = generation + 1",
        (group,),
    )
    generation = int(
        conn.execute("SELECT generation FROM groups WHERE group_id = ?", (group,)).fetchone()[0]
    )
    members = [
        (m, tuple(json.loads(topics)))
        for m, topics in conn.execute(
            "SELECT member_id, topics FROM members WHERE group_id = ? ORDER BY rank", (group,)
        )
    ]
    wanted = sorted({t for _, topics in members for t in topics})
    counts = {
        name: int(n)
        for name, n in conn.execute(
            f"SELECT name, partitions FROM topics WHERE name IN ({','.join('?' * len(wanted))})",
            wanted,
        )
    }
    previous = {
        TopicPartition(t, p): m
        for t, p, m in conn.execute(
            "SELECT topic, partition, member_id FROM targets WHERE group_id = ?", (group,)
        )
    }
    target = assign(members, counts, previous)
    conn.execute("DELETE FROM targets WHERE group_id = ?", (group,))
    conn.executemany(
        "INSERT INTO targets VALUES (?, ?, ?, ?)",
        [(group, tp.topic, tp.partition, m) for tp, m in target.items()],
    )
    logger.info(
        "group %s generation %d: %s",
        group,
        generation,
        {
            m: sorted(f"{tp.topic}-{tp.partition}" for tp, o in target.items() if o == m)
            for m, _ in members
        },
    )
    return generation


def _expire_locked(conn: sqlite3.Connection, group: str, at_ms: int) -> list[str]:
    dead = [
        r[0]
        for r in conn.execute(
            "SELECT member_id FROM members "
            "WHERE group_id = ? AND heartbeat_ms + session_timeout_ms < ?",
            (group, at_ms),
        )
    ]
    for member in dead:
        logger.warning("group %s: member %s missed its heartbeats, removing it", group, member)
        conn.execute("DELETE FROM members WHERE group_id = ? AND member_id = ?", (group, member))
        conn.execute("DELETE FROM owners WHERE group_id = ? AND member_id = ?", (group, member))
    return dead


def join(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    client_id: str,
    topics: Sequence[str],
    session_timeout_ms: int,
) -> None:
    with transaction(conn):
        at = now_ms()
        _expire_locked(conn, group, at)
        rank = conn.execute(
            "SELECT coalesce(max(rank), 0) + 1 FROM members WHERE group_id = ?", (group,)
        ).fetchone()[0]
        conn.execute(
            "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group, member, client_id, json.dumps(sorted(topics)), rank, at, session_timeout_ms),
        )
        _rebalance(conn, group)


def leave(conn: sqlite3.Connection, group: str, member: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM owners WHERE group_id = ? AND member_id = ?", (group, member))
        gone = conn.execute(
            "DELETE FROM members WHERE group_id = ? AND member_id = ?", (group, member)
        ).rowcount
        if gone:
            _rebalance(conn, group)


def heartbeat(conn: sqlite3.Connection, group: str, member: str) -> bool:
    """Record that ``member`` is alive; False if the group already removed it."""
    with transaction(conn):
        updated = conn.execute(
            "UPDATE members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
            (now_ms(), group, member),
        ).rowcount
    return bool(updated)


def expire(conn: sqlite3.Connection, group: str) -> list[str]:
    """Remove members whose session timed out (a crashed or hung process) and rebalance."""
    at = now_ms()
    stale = conn.execute(
        "SELECT 1 FROM members "
        "WHERE group_id = ? AND heartbeat_ms + session_timeout_ms < ? LIMIT 1",
        (group, at),
    ).fetchone()
    if stale is None:
        return []
    with transaction(conn):
        dead = _expire_locked(conn, group, now_ms())
        if dead:
            _rebalance(conn, group)
    return dead


def targets(
    conn: sqlite3.Connection, group: str, member: str
) -> tuple[int, set[TopicPartition], bool]:
    """The current generation, the partitions it gives ``member``, and whether ``member``
    is still in the group (one snapshot)."""
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT generation FROM groups WHERE group_id = ?", (group,)).fetchone()
        present = conn.execute(
            "SELECT 1 FROM members WHERE group_id = ? AND member_id = ?", (group, member)
        ).fetchone()
        tps = {
            TopicPartition(t, p)
            for t, p in conn.execute(
                "SELECT topic, partition FROM targets WHERE group_id = ? AND member_id = ?",
                (group, member),
            )
        }
    finally:
        conn.execute("COMMIT")
    return (int(row[0]) if row else 0), tps, present is not None


def generation(conn: sqlite3.Connection, group: str) -> int:
    row = conn.execute("SELECT generation FROM groups WHERE group_id = ?", (group,)).fetchone()
    return int(row[0]) if row else 0


def claim(
    conn: sqlite3.Connection, group: str, member: str, tps: Iterable[TopicPartition]
) -> set[TopicPartition]:
    """Take the partitions of ``tps`` that are targeted to ``member`` and free (no owner,
    or an owner that is no longer a member). Others stay with their owner until it
    releases them."""
    claimed: set[TopicPartition] = set()
    with transaction(conn):
        for tp in tps:
            target = conn.execute(
                "SELECT member_id FROM targets WHERE group_id = ? AND topic = ? AND partition = ?",
                (group, tp.topic, tp.partition),
            ).fetchone()
            if target is None or target[0] != member:
                continue
            owner = conn.execute(
                "SELECT o.member_id, m.member_id FROM owners o LEFT JOIN members m "
                "ON m.group_id = o.group_id AND m.member_id = o.member_id "
                "WHERE o.group_id = ? AND o.topic = ? AND o.partition = ?",
                (group, tp.topic, tp.partition),
            ).fetchone()
            if owner is not None and owner[0] != member and owner[1] is not None:
                continue  # still held by a live member that has not released it yet
            conn.execute(
                "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
                (group, tp.topic, tp.partition, member),
            )
            claimed.add(tp)
    return claimed


def release(
    conn: sqlite3.Connection, group: str, member: str, tps: Iterable[TopicPartition]
) -> None:
    with transaction(conn):
        conn.executemany(
            "DELETE FROM owners "
            "WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?",
            [(group, tp.topic, tp.partition, member) for tp in tps],
        )


def commit(
    conn: sqlite3.Connection, group: str, member: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Store ``offsets`` if ``member`` still owns every partition; else CommitFailed."""
    at = now_ms()
    with transaction(conn):
        for tp in offsets:
            owner = conn.execute(
                "SELECT member_id FROM owners WHERE group_id = ? AND topic = ? AND partition = ?",
                (group, tp.topic, tp.partition),
            ).fetchone()
            if owner is None or owner[0] != member:
                raise CommitFailed(
                    f"cannot commit {tp.topic}[{tp.partition}] for group {group!r}: "
                    "the partition was reassigned to another member",
                    hint="drop in-flight work for it; the new owner resumes from the last commit",
                )
        conn.executemany(
            "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, ?, ?)",
            [(group, tp.topic, tp.partition, int(offset), at) for tp, offset in offsets.items()],
        )


def committed(
    conn: sqlite3.Connection, group: str, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, int | None]:
    result: dict[TopicPartition, int | None] = dict.fromkeys(tps)
    for tp in tps:
        row = conn.execute(
            "SELECT next_offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
            (group, tp.topic, tp.partition),
        ).fetchone()
        if row is not None:
            result[tp] = int(row[0])
    return result
