"""A bounded memory of the event ids ingest wrote recently.

A client that retries a post (a timeout, a lost 202) sends the same ``event_id`` again;
the API acknowledges it without writing it twice. The memory is bounded (the oldest id
is forgotten first) and per process: a retry after a restart or to another replica is
written again, and the detector, which also deduplicates on ``event_id``, counts it once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """The last ``capacity`` ids added. Not thread-safe: callers hold the produce lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add_all(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
