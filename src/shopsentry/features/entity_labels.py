"""Labels and analyst reviews into the entity store: what keeps the entity fraud
features current between retrains.

The detector reads ``fraud-labels`` (chargebacks, the simulator's ground truth) and
``alert-reviews`` (analyst verdicts) in a consumer group of its own
(``<detector group>-labels``). :func:`labels_of` turns a polled batch into
:class:`~shopsentry.features.offline.KnownLabel` deltas (a pure function);
:func:`run_label_consumer` applies them to the entity store and only then commits, so a
crash redelivers labels, which the store applies idempotently. A label counts in a
feature only from its ``known_at`` on (the feature reads filter on it), so a label that
arrives early — a backlog replayed — cannot leak into an earlier decision.

This is a small consumer of its own because the shared stream runtime was not on main
when it was written; it is one handler's worth of logic, ready to move onto it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from shopsentry.bus.base import EventLog, Record
from shopsentry.errors import InvalidEvent
from shopsentry.events.codec import decode_as
from shopsentry.events.schema import Label, Review
from shopsentry.features.entity_store import EntityStore
from shopsentry.features.offline import KnownLabel

logger = logging.getLogger(__name__)


def labels_of(records: Sequence[Record], reviews_topic: str) -> list[KnownLabel]:
    """The label deltas in ``records`` (bad records are logged and skipped)."""
    out: list[KnownLabel] = []
    for record in records:
        try:
            if record.topic == reviews_topic:
                review: Review = decode_as("review", record.value)
                out.append(
                    KnownLabel(
                        review.event_id,
                        review.verdict == "confirmed_fraud",
                        review.reviewed_at.timestamp(),
                    )
                )
            else:
                label: Label = decode_as("label", record.value)
                out.append(KnownLabel(label.event_id, label.is_fraud, label.known_at.timestamp()))
        except InvalidEvent as exc:
            logger.warning(
                "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
            )
    return out


def run_label_consumer(
    log: EventLog,
    store: EntityStore,
    *,
    group_id: str,
    labels_topic: str,
    reviews_topic: str,
    stop: threading.Event,
    max_records: int = 500,
) -> int:
    """Apply labels and reviews to ``store`` until ``stop`` is set; returns how many
    labels found their purchase."""
    consumer = log.consumer(group_id, [labels_topic, reviews_topic])
    applied = 0
    try:
        while not stop.is_set():
            records = consumer.poll(max_records=max_records, timeout=0.5)
            if not records:
                continue
            applied += store.apply_labels(labels_of(records, reviews_topic))
            consumer.commit()  # after the store: a crash redelivers, applied idempotently
    finally:
        consumer.close()
    return applied
