"""The event log: one interface (:mod:`.base`), an embedded backend (:mod:`.local`)
and Apache Kafka (:mod:`.kafka`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shopsentry.bus.base import (
    Consumer,
    EventLog,
    PartitionInfo,
    PartitionLag,
    Producer,
    Record,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)
from shopsentry.bus.partitioner import murmur2, partition_for

if TYPE_CHECKING:
    from shopsentry.config import Settings, TopicSettings

__all__ = [
    "Consumer",
    "EventLog",
    "PartitionInfo",
    "PartitionLag",
    "Producer",
    "Record",
    "TopicInfo",
    "TopicPartition",
    "TopicSpec",
    "murmur2",
    "open_log",
    "partition_for",
    "topic_specs",
]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of the configuration, as specs a backend can create."""
    return [spec_of(t) for t in settings.topics.all()]


def spec_of(topic: TopicSettings) -> TopicSpec:
    return TopicSpec(
        name=topic.name,
        partitions=topic.partitions,
        replication_factor=topic.replication_factor,
        retention_ms=topic.retention_ms,
        min_insync_replicas=topic.min_insync_replicas,
        cleanup_policy=topic.cleanup_policy,
    )


def open_log(settings: Settings, *, create_topics: bool = True) -> EventLog:
    """Open the backend that ``settings.bus`` names, creating the configured topics
    on the embedded log (on Kafka, topics are created by `shopsentry topics create`)."""
    bootstrap = settings.kafka_bootstrap
    if bootstrap is not None:
        from shopsentry.bus.kafka import KafkaLog

        return KafkaLog(bootstrap, settings.kafka)
    from shopsentry.bus.local import LocalLog

    log = LocalLog(
        settings.log_dir,
        fsync=settings.log_fsync,
        session_timeout_ms=settings.log_session_timeout_ms,
    )
    if create_topics:
        log.create_topics(topic_specs(settings))
    return log
