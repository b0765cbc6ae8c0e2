"""The event log: one interface (:mod:`.base`), an embedded backend (:mod:`.local`)
and Apache Kafka (:mod:`.kafka`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

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
    from shopsentry.config import KafkaSettings, Settings, TopicSettings, TopicsSettings

__all__ = [
    "BusConfig",
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


@dataclass(frozen=True, slots=True)
class BusConfig:
    """What opening the event log needs: Kafka's bootstrap servers and client settings,
    or (``kafka_bootstrap`` None) the embedded log's directory, fsync policy and group
    session timeout; and the topics to create on the embedded log."""

    kafka_bootstrap: str | None
    kafka: KafkaSettings
    log_dir: Path
    fsync: Literal["batch", "always", "never"]
    session_timeout_ms: int
    topics: TopicsSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> BusConfig:
        return cls(
            kafka_bootstrap=settings.kafka_bootstrap,
            kafka=settings.kafka,
            log_dir=settings.log_dir,
            fsync=settings.log_fsync,
            session_timeout_ms=settings.log_session_timeout_ms,
            topics=settings.topics,
        )


def topic_specs(topics: TopicsSettings) -> list[TopicSpec]:
    """The configured topics, as specs a backend can create."""
    return [spec_of(t) for t in topics.all()]


def spec_of(topic: TopicSettings) -> TopicSpec:
    return TopicSpec(
        name=topic.name,
        partitions=topic.partitions,
        replication_factor=topic.replication_factor,
        retention_ms=topic.retention_ms,
        min_insync_replicas=topic.min_insync_replicas,
        cleanup_policy=topic.cleanup_policy,
    )


def open_log(config: BusConfig, *, create_topics: bool = True) -> EventLog:
    """Open the backend that the ``bus`` setting names, creating the configured topics
    on the embedded log (on Kafka, topics are created by `shopsentry topics create`)."""
    if config.kafka_bootstrap is not None:
        from shopsentry.bus.kafka import KafkaLog

        return KafkaLog(config.kafka_bootstrap, config.kafka)
    from shopsentry.bus.local import LocalLog

    log = LocalLog(
        config.log_dir,
        fsync=config.fsync,
        session_timeout_ms=config.session_timeout_ms,
    )
    if create_topics:
        log.create_topics(topic_specs(config.topics))
    return log
