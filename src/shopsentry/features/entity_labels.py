"""Labels and analyst reviews into the entity store: what keeps the entity fraud
features current between retrains.

The detector reads ``fraud-labels`` (chargebacks, the simulator's ground truth) and
``alert-reviews`` (analyst verdicts) in a consumer group of its own
(``<detector group>-labels``), as a handler on the stream runtime
(:mod:`shopsentry.stream`, ``docs/stream.md``): :class:`LabelHandler` turns a polled
batch into :class:`~shopsentry.features.offline.KnownLabel` deltas (it computes only),
and :class:`~shopsentry.features.entity_store.EntityLabelSink` applies them to the entity
store together with the positions they reach, in one atomic, fenced write. So:

- a label counts once: a redelivery below the stored position is skipped by the runtime,
  and applying a label twice changes nothing anyway (it is keyed by the purchase's
  ``event_id`` in each entity's fraud list);
- a label never counts before its ``known_at``: the feature reads filter on it, so a
  label that arrives early (a backlog replayed) cannot leak into an earlier decision;
- the positions live with the entity state, not only in the group's committed offsets:
  after a crash the consumer resumes where the state says it is.

A record that is not a label or a review is logged (rate-limited, with topic, partition
and offset) and skipped: the label consumer produces nothing, so it has no dead-letter
output whose loss a crash could cause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shopsentry.bus.base import EventLog, Record
from shopsentry.errors import InvalidEvent
from shopsentry.events.codec import decode_as
from shopsentry.events.schema import Label, Review
from shopsentry.features.entity_store import EntityLabelSink, EntityStore
from shopsentry.features.offline import KnownLabel
from shopsentry.stream.base import BatchResult, HandlerBase
from shopsentry.stream.dead_letters import DeadLetterLog
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

# How long one idle poll blocks: bounds how fast a stop request is noticed.
IDLE_POLL_S = 0.2


def labels_of(
    records: Sequence[Record], reviews_topic: str, bad: DeadLetterLog | None = None
) -> list[KnownLabel]:
    """The label deltas in ``records``; a bad record is noted in ``bad`` (or logged)
    and skipped."""
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
            if bad is None:
                logger.warning(
                    "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
                )
            else:
                bad.note(record.topic, record.partition, record.offset, "decode", exc.one_line())
    return out


class LabelHandler(HandlerBase):
    """Labels and reviews → entity-store label deltas (the sink applies them)."""

    def __init__(self, reviews_topic: str) -> None:
        self.reviews_topic = reviews_topic
        self.bad = DeadLetterLog(logger)
        self.labels = 0  # labels handed to the sink so far

    def process(self, records: Sequence[Record]) -> BatchResult:
        labels = labels_of(records, self.reviews_topic, self.bad)
        self.labels += len(labels)
        return BatchResult(changes=labels)


def label_group(detector_group: str) -> str:
    """The label consumer's group: the detector's group with ``-labels``."""
    return f"{detector_group}-labels"


@dataclass(frozen=True, slots=True)
class LabelConsumerConfig:
    """What the label consumer reads of the configuration: its group (derived from the
    detector's, :func:`label_group`), the two topics it reads, and the detector's
    micro-batch bounds, which it shares."""

    group_id: str
    labels_topic: str
    reviews_topic: str
    batch_max_records: int
    batch_max_wait_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelConsumerConfig:
        t, d = settings.topics, settings.detector
        return cls(
            group_id=label_group(d.group_id),
            labels_topic=t.labels.name,
            reviews_topic=t.reviews.name,
            batch_max_records=d.batch_max_records,
            batch_max_wait_ms=d.batch_max_wait_ms,
        )


def label_runtime(
    config: LabelConsumerConfig,
    log: EventLog,
    store: EntityStore,
    *,
    stop: threading.Event | None = None,
) -> StreamRuntime:
    """The label consumer: :class:`LabelHandler` into ``store`` on the stream runtime."""
    runtime_config = RuntimeConfig(
        group_id=config.group_id,
        topics=(config.labels_topic, config.reviews_topic),
        client_id="detector-labels",
        batch_max_records=config.batch_max_records,
        batch_max_wait_ms=config.batch_max_wait_ms,
        idle_poll_s=IDLE_POLL_S,
        produces=False,
    )
    return StreamRuntime(
        log,
        runtime_config,
        LabelHandler(config.reviews_topic),
        EntityLabelSink(store),
        stop=stop,
    )
