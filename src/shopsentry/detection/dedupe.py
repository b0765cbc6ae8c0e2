"""Idempotence on ``event_id``: an event a client posted twice is counted and decided once.

The stream runtime already skips a *redelivered* record (its offset is below the state's
position). A client's retry is another thing: the same event at a new offset, which the
offsets cannot tell apart from a new event. So each user keeps the ids of its most
recent events, per topic (the purchase and the behaviour partitions of a user may have
different owners, and each writes only its own), in the state store's ``seen``
namespace: key ``p:<user>`` or ``b:<user>``. It is saved in the same atomic write as
the feature states and the applied offsets, so a crash can neither forget an id whose
event was counted nor remember one that was not.

A valid event whose id is among its user's recent ids is dropped before the features:
no feature update, no decision; its offset still counts as applied, and it is counted
in ``shopsentry_duplicate_events_total``. An event that fails validation is
dead-lettered as before and remembers nothing (a re-post of a broken event is
dead-lettered again). The memory is bounded: the last ``detector.recent_event_ids`` ids
per user and topic, so a retry is caught as long as the user posted fewer events than
that in between — a client's retry comes within seconds.

In memory a user's ids are a set (membership) and a bounded deque (which to forget);
the stored bytes, the ids joined by newlines (an event id has none), are written once
per changed user and batch, not per event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shopsentry.features.state_store import SEEN_NS

if TYPE_CHECKING:
    from shopsentry.bus.base import Record, TopicPartition
    from shopsentry.features.state_store import StateStore


class SeenCache(Protocol):
    """Where the worker keeps states between batches (``hot_path.StateCache``)."""

    def take(self, namespace: str, users: Iterable[str]) -> dict[str, Any]: ...


class Recent:
    """One user's most recent event ids on one topic, oldest first."""

    __slots__ = ("ids", "order")

    def __init__(self, keep: int, ids: Iterable[str] = ()) -> None:
        self.order: deque[str] = deque(ids, maxlen=keep)
        self.ids = set(self.order)

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` is recent; otherwise remember it (forgetting the oldest)."""
        ids = self.ids
        if event_id in ids:
            return True
        order = self.order
        if len(order) == order.maxlen:
            ids.discard(order[0])
        order.append(event_id)
        ids.add(event_id)
        return False

    def to_bytes(self) -> bytes:
        return "\n".join(self.order).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None, keep: int) -> Recent:
        return cls(keep, raw.decode().split("\n") if raw else ())


@dataclass(slots=True)
class Deduplicated:
    duplicates: dict[str, int] = field(default_factory=dict)  # topic → events dropped
    changed: dict[str, bytes] = field(default_factory=dict)  # seen key → its new bytes
    states: dict[str, Recent] = field(default_factory=dict)  # every key the batch read


class RecentEventIds:
    """Drops the events of a batch whose id its user posted recently (see the module)."""

    def __init__(self, purchase_topic: str, keep: int) -> None:
        self.purchase_topic = purchase_topic
        self.keep = keep

    def drop_duplicates(
        self,
        by_partition: dict[TopicPartition, list[tuple[Record, Any]]],
        store: StateStore,
        cache: SeenCache | None = None,
    ) -> Deduplicated:
        """Remove the duplicates from each partition's (record, event) list, in place;
        the changed recent ids go in the batch's state changes (and, once saved, in
        ``cache`` with the other states)."""
        result = Deduplicated()
        prefixes = {tp: "p:" if tp.topic == self.purchase_topic else "b:" for tp in by_partition}
        keys = {prefixes[tp] + ev.user_id for tp, items in by_partition.items() for _, ev in items}
        recent: dict[str, Recent] = cache.take(SEEN_NS, keys) if cache is not None else {}
        missing = sorted(keys.difference(recent))
        keep = self.keep
        if missing:
            loaded = store.load(SEEN_NS, missing)
            for key in missing:
                recent[key] = Recent.from_bytes(loaded.get(key), keep)
        changed: set[str] = set()
        for tp, items in by_partition.items():
            prefix = prefixes[tp]
            kept = []
            for item in items:
                event = item[1]
                key = prefix + event.user_id
                if recent[key].seen(event.event_id):
                    result.duplicates[tp.topic] = result.duplicates.get(tp.topic, 0) + 1
                    continue
                changed.add(key)
                kept.append(item)
            if len(kept) != len(items):
                items[:] = kept
        result.changed = {key: recent[key].to_bytes() for key in changed}
        result.states = recent  # every entry taken or read: back to the cache once saved
        return result
