"""Whether an input record is an event the system accepts: one verdict for every reader.

The detector dead-letters what fails here, so every other reader of the input topics
(the API's alert read model) must apply the same checks, or it would show purchases
that were never decided: a payload over the size limit or not a valid event
(:func:`~shopsentry.events.codec.decode`), an event on the wrong topic, or a record
whose key is not its ``user_id`` (the partitioning key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shopsentry.bus.base import Record
from shopsentry.errors import InvalidEvent
from shopsentry.events.codec import decode
from shopsentry.events.schema import Purchase


@dataclass(frozen=True, slots=True)
class Admission:
    purchase_topic: str
    behavior_topic: str
    max_event_bytes: int


def misrouted(record: Record, event: Any, admission: Admission) -> str | None:
    """Why a valid event cannot be processed where it is (None: it can)."""
    is_purchase = isinstance(event, Purchase)
    if record.topic == admission.purchase_topic and not is_purchase:
        return f"event_type: {event.event_type!r} is not a purchase but arrived on {record.topic}"
    if record.topic == admission.behavior_topic and is_purchase:
        return f"event_type: 'purchase' arrived on {record.topic}"
    if record.key != event.user_id.encode():
        # A user's events must share a partition, or two workers would race on one state.
        return "key: record key must equal user_id (the partitioning key)"
    return None


def admit(record: Record, admission: Admission) -> tuple[Any, str, str]:
    """(event, "", "") when accepted, else (None, stage, reason) as the detector would
    dead-letter it (stage "decode" or "route")."""
    try:
        event = decode(record.value, max_bytes=admission.max_event_bytes)
    except InvalidEvent as exc:
        return None, "decode", exc.one_line()
    problem = misrouted(record, event, admission)
    if problem is not None:
        return None, "route", problem
    return event, "", ""
