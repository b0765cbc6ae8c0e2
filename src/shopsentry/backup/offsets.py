"""Point a consumer group at given offsets: how a restore makes consumers replay.

The group joins with one member, waits until that member owns every partition of its
topics (the group's former members must be gone: a restore runs with consumers
stopped), commits the offsets and leaves. A partition the backup recorded nothing for
starts at the log's first retained offset; an offset past what the log retains is
clamped into it, and that gap is logged: those records are lost to the replay.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import TransientError

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

ASSIGNMENT_TIMEOUT_S = 120.0


class GroupStillActive(TransientError):
    def __init__(self, group: str) -> None:
        super().__init__(
            f"consumer group {group!r} did not hand all its partitions to the restore",
            hint="stop every consumer of this data dir (detector, API, loader), then retry",
        )
        self.group = group


def set_group_offsets(
    settings: Settings, group: str, topics: list[str], offsets: dict[str, int]
) -> dict[TopicPartition, int]:
    """Commit ``offsets`` ("topic:partition" → next offset) for ``group``; returns what
    was committed for every partition of ``topics`` (and of the offsets' topics)."""
    from shopsentry.bus import BusConfig, open_log

    names = sorted(set(topics) | {k.rsplit(":", 1)[0] for k in offsets})
    log = open_log(BusConfig.from_settings(settings))
    try:
        existing = set(log.list_topics())
        target: dict[TopicPartition, int] = {}
        for topic in (t for t in names if t in existing):
            for p in log.describe_topic(topic).partitions:
                wanted = offsets.get(f"{topic}:{p.partition}", p.start_offset)
                if wanted < p.start_offset:
                    logger.warning(
                        "%s[%d]: offset %d is no longer retained (log starts at %d): "
                        "records in between are lost to the replay",
                        topic,
                        p.partition,
                        wanted,
                        p.start_offset,
                    )
                target[TopicPartition(topic, p.partition)] = max(
                    p.start_offset, min(wanted, p.end_offset)
                )
        if not target:
            return {}
        consumer = log.consumer(group, sorted({tp.topic for tp in target}))
        try:
            deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
            while not set(target) <= consumer.assignment():
                if time.monotonic() > deadline:
                    raise GroupStillActive(group)
                consumer.poll(max_records=1, timeout=0.5)
            consumer.commit(target)
        finally:
            consumer.close()
    finally:
        log.close()
    logger.info("group %s rewound on %d partitions", group, len(target))
    return target
