"""Reading a stretch of a topic outside any consumer group: from given offsets (or a
time) to the end offsets it had when the read began, then stop.

For tools that need what the log holds right now — a restore collecting the decisions
made since a backup, the demo's summary joining decisions with the simulator's labels —
not for consumers that follow a topic (those run on :mod:`shopsentry.stream`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import TransientError

if TYPE_CHECKING:
    from shopsentry.bus.base import Consumer, EventLog, Record

READ_TIMEOUT_S = 300.0


class ReadIncomplete(TransientError):
    def __init__(self, topic: str, missing: int) -> None:
        super().__init__(
            f"could not read {topic} to its end ({missing} partitions short of it)",
            hint="is the event log reachable? retry",
        )
        self.topic = topic


def read_to_end(
    log: EventLog,
    topic: str,
    *,
    starts: Mapping[int, int] | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> Iterator[Record]:
    """Every record of ``topic`` from ``starts`` (partition → offset; a partition not
    named: its first retained offset) up to the end offsets at the call, each
    partition in offset order. Raises ReadIncomplete if the end is not reached within
    ``timeout_s``."""
    if topic not in log.list_topics():
        return
    ends: dict[TopicPartition, int] = {}
    first: dict[TopicPartition, int] = {}
    for p in log.describe_topic(topic).partitions:
        tp = TopicPartition(topic, p.partition)
        first[tp] = max(p.start_offset, (starts or {}).get(p.partition, p.start_offset))
        if first[tp] < p.end_offset:
            ends[tp] = p.end_offset
    if not ends:
        return
    holder: list[Consumer] = []

    def position(tps: Sequence[TopicPartition]) -> None:
        for tp in tps if holder else ():
            if tp in first:
                holder[0].seek(tp, first[tp])

    # Kafka assigns every partition at once, the embedded log at the first poll.
    consumer = log.consumer(None, [topic], on_assign=position)
    holder.append(consumer)
    try:
        position(sorted(consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for record in consumer.poll(max_records=5000, timeout=1.0):
                tp = record.tp
                end = ends.get(tp)
                if end is None or record.offset >= end:
                    continue
                if record.offset + 1 >= end:
                    del ends[tp]
                if record.offset < first[tp]:
                    continue  # before the start (a backend that ignored the seek)
                yield record
    finally:
        consumer.close()
    if ends:
        raise ReadIncomplete(topic, len(ends))
