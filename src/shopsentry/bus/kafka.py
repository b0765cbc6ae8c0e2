"""Apache Kafka as the event log, through confluent-kafka (librdkafka).

:class:`KafkaLog` implements :class:`~shopsentry.bus.base.EventLog`: topics and groups
here, on the bounded, retrying admin requests of :mod:`shopsentry.bus.kafka_admin`
(the reachability probe, offsets); producer and consumer in
:mod:`shopsentry.bus.kafka_client`, configuration and error translation in
:mod:`shopsentry.bus.kafka_config`.

Every call that talks to the cluster is bounded: the first use probes the brokers for at
most ``connect_timeout_s`` and turns silence into :class:`BrokerUnavailable`, refused
credentials into :class:`AuthenticationFailed`; admin requests wait at most
``request_timeout_ms``. Nothing blocks forever on a broker that is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from shopsentry.bus.base import (
    Consumer,
    PartitionInfo,
    PartitionLag,
    Producer,
    RebalanceCallback,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)
from shopsentry.bus.kafka_admin import UNKNOWN_TOPIC_GRACE_S, KafkaAdmin
from shopsentry.bus.kafka_config import UNKNOWN_TOPIC_CODES, translate
from shopsentry.config import KafkaSettings
from shopsentry.errors import ConfigError, UnknownTopic

if TYPE_CHECKING:
    from shopsentry.bus.kafka_groups import GroupProbe

logger = logging.getLogger(__name__)

_ALWAYS_SHOWN_CONFIG = frozenset(
    {
        "retention.ms",
        "retention.bytes",
        "min.insync.replicas",
        "cleanup.policy",
        "compression.type",
        "max.message.bytes",
    }
)


class KafkaLog(KafkaAdmin):
    """The event log on an Apache Kafka cluster (``--bus kafka://host:port[,host:port]``)."""

    def __init__(self, bootstrap: str, settings: KafkaSettings | None = None) -> None:
        super().__init__(bootstrap, settings)
        self._groups: GroupProbe | None = None  # started by the first group_lag

    def __repr__(self) -> str:
        # Never the config dict: it holds the SASL password.
        return (
            f"KafkaLog(bootstrap={self.bootstrap!r}, security_protocol="
            f"{self.settings.security_protocol!r}, user={self.settings.sasl_username!r})"
        )

    # -- topics ------------------------------------------------------------------------
    def list_topics(self) -> list[str]:
        return sorted(t for t in self.metadata().topics if not t.startswith("__"))

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet, with their partitions, replication,
        retention.ms and min.insync.replicas; existing topics are left alone, except that
        one meant to be compacted is made so (see :meth:`_compact_existing`)."""
        md = self.metadata()
        brokers = len(md.brokers)
        self._compact_existing([s for s in specs if s.name in md.topics])
        missing = [s for s in specs if s.name not in md.topics]
        if not missing:
            return
        too_wide = [s for s in missing if s.replication_factor > brokers]
        if too_wide:
            worst = max(s.replication_factor for s in too_wide)
            raise ConfigError(
                f"replication factor {worst} needs {worst} brokers, the cluster at "
                f"{self.bootstrap} has {brokers}",
                hint=f"pass --replication-factor {brokers}",
            )
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config={
                    "retention.ms": str(s.retention_ms),
                    "min.insync.replicas": str(s.min_insync_replicas),
                    "cleanup.policy": s.cleanup_policy,
                },
            )
            for s in missing
        ]
        futures = self._admin.create_topics(
            new, request_timeout=self._timeout, operation_timeout=self._timeout
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self._timeout + 1)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by someone else: fine
                if err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                    raise ConfigError(
                        f"cannot create {name!r}: {err.str()}",
                        hint=f"pass --replication-factor {brokers}",
                    ) from None
                raise translate(
                    err, bootstrap=self.bootstrap, topic=name, action=f"creating {name!r}"
                ) from None
            logger.info("created topic %s", name)
        self._wait_for_leaders([s.name for s in missing])

    def _compact_existing(self, specs: Sequence[TopicSpec]) -> None:
        """An existing topic whose spec says ``compact`` but that was created with
        ``delete`` (by an older release: the rules-control topic) is switched to
        compaction: under ``delete`` its oldest records, the rules still in force, would
        age out. The other way round is never done (that would drop history)."""
        for spec in specs:
            if spec.cleanup_policy != "compact":
                continue
            if self._config(spec.name).get("cleanup.policy") == "compact":
                continue
            entry = ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET
            )
            resource = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[entry])

            def alter(timeout: float, resource: Any = resource) -> Any:
                return self._admin.incremental_alter_configs([resource], request_timeout=timeout)[
                    resource
                ]

            self._call(alter, f"setting cleanup.policy=compact on {spec.name!r}", spec.name)
            logger.warning(
                "topic %s had cleanup.policy=delete; set it to compact, as its records"
                " must outlive retention",
                spec.name,
            )

    def _wait_for_leaders(self, names: list[str]) -> None:
        """A new topic is usable once every partition has a leader in the metadata."""
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            md = self.metadata()
            if all(
                n in md.topics
                and md.topics[n].error is None
                and md.topics[n].partitions
                and all(p.leader >= 0 for p in md.topics[n].partitions.values())
                for n in names
            ):
                return
            time.sleep(0.1)
        logger.warning("topics %s created but leaders not yet visible", names)

    def partitions_of(self, topic: str) -> list[int]:
        md = self._metadata_with(topic)
        return sorted(md.topics[topic].partitions)

    def require_topics(self, topics: Sequence[str]) -> None:
        for t in topics:
            self._metadata_with(t)

    def _metadata_with(self, topic: str) -> ClusterMetadata:
        """Metadata that lists ``topic``. Brokers learn about a new topic a moment apart
        (a broker that just restarted may still be replaying the metadata log), so a
        missing topic is asked about again for a few seconds before it is called unknown."""
        deadline = time.monotonic() + UNKNOWN_TOPIC_GRACE_S
        while True:
            md = self.metadata()
            info = md.topics.get(topic)
            if info is not None and info.error is None:
                return md
            if time.monotonic() >= deadline:
                error = None if info is None else info.error
                if error is None or error.code() in UNKNOWN_TOPIC_CODES:
                    raise UnknownTopic(topic)
                # Known but unwell (no leader while brokers are down): transient.
                raise translate(error, bootstrap=self.bootstrap, action=f"reading {topic!r}")
            time.sleep(0.2)

    def describe_topic(self, name: str) -> TopicInfo:
        self._metadata_with(name)  # UnknownTopic within a few seconds, not after retries
        desc = self._describe(name)
        marks = self.watermarks([TopicPartition(name, p.id) for p in desc.partitions])
        config = self._config(name)
        parts = tuple(
            PartitionInfo(
                partition=p.id,
                start_offset=marks[TopicPartition(name, p.id)][0],
                end_offset=marks[TopicPartition(name, p.id)][1],
                leader=p.leader.id if p.leader is not None and p.leader.id >= 0 else None,
                replicas=tuple(n.id for n in p.replicas),
                isr=tuple(n.id for n in p.isr),
            )
            for p in sorted(desc.partitions, key=lambda p: p.id)
        )
        return TopicInfo(name=name, partitions=parts, config=config)

    def _describe(self, name: str) -> Any:
        return self._call(
            lambda t: self._admin.describe_topics(TopicCollection([name]), request_timeout=t)[name],
            f"describing {name!r}",
            name,
        )

    def _config(self, name: str) -> dict[str, str]:
        resource = ConfigResource(ResourceType.TOPIC, name)
        entries = self._call(
            lambda t: self._admin.describe_configs([resource], request_timeout=t)[resource],
            f"describing {name!r} config",
            name,
        )
        # What was set on the topic, plus the effective values people ask about: the
        # full list (~40 broker defaults) buries them.
        return {
            k: e.value
            for k, e in sorted(entries.items())
            if e.value is not None
            and not e.is_sensitive
            and (not e.is_default or k in _ALWAYS_SHOWN_CONFIG)
        }

    def isr_of(self, name: str) -> dict[int, tuple[int, ...]]:
        """In-sync replicas per partition, without asking for offsets: a partition below
        min.insync.replicas may not serve its end offset (KIP-966), but its ISR is known."""
        self._metadata_with(name)
        return {p.id: tuple(n.id for n in p.isr) for p in self._describe(name).partitions}

    def under_min_isr(self, tps: Sequence[TopicPartition]) -> list[tuple[TopicPartition, int, int]]:
        """The partitions among ``tps`` whose in-sync replicas are fewer than the topic's
        min.insync.replicas, as (partition, isr size, minimum): why acks=all writes fail."""
        found: list[tuple[TopicPartition, int, int]] = []
        for topic in sorted({tp.topic for tp in tps}):
            isr = self.isr_of(topic)
            minimum = int(self._config(topic).get("min.insync.replicas", "1"))
            wanted = {tp.partition for tp in tps if tp.topic == topic}
            found.extend(
                (TopicPartition(topic, p), len(isr[p]), minimum)
                for p in sorted(wanted)
                if p in isr and len(isr[p]) < minimum
            )
        return found

    # -- groups ------------------------------------------------------------------------
    def list_groups(self) -> list[str]:
        self.ensure_reachable()
        result = self._call(
            lambda t: self._admin.list_consumer_groups(request_timeout=t), "listing groups"
        )
        return sorted(g.group_id for g in result.valid)

    def group_lag(self, group: str) -> list[PartitionLag]:
        """Committed offset, end offset and owner of every partition of the topics the
        group has committed to or is assigned. The group's offsets and members are read
        in a child process (:mod:`shopsentry.bus.kafka_groups`: librdkafka can abort the
        process on those requests when a broker dies); the end offsets here."""
        self.ensure_reachable()
        if self._groups is None:
            from shopsentry.bus.kafka_groups import GroupProbe

            self._groups = GroupProbe(self.bootstrap, self.settings, self._admin_deadline)
        committed_raw, owner_raw = self._groups.read(group)
        committed = {TopicPartition(t, p): off for (t, p), off in committed_raw.items()}
        owner = {TopicPartition(t, p): member for (t, p), member in owner_raw.items()}
        topics = {tp.topic for tp in committed} | {tp.topic for tp in owner}
        if not topics:
            return []
        md = self.metadata()
        all_tps = [
            TopicPartition(t, p)
            for t in sorted(topics)
            if t in md.topics
            for p in sorted(md.topics[t].partitions)
        ]
        marks = self.watermarks(all_tps)
        return [
            PartitionLag(
                group=group,
                topic=tp.topic,
                partition=tp.partition,
                committed=committed.get(tp),
                end_offset=marks[tp][1],
                member=owner.get(tp),
            )
            for tp in all_tps
        ]

    # -- clients -------------------------------------------------------------------------
    def producer(self) -> Producer:
        from shopsentry.bus.kafka_client import KafkaProducer

        self.ensure_reachable()
        return KafkaProducer(self)

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
    ) -> Consumer:
        from shopsentry.bus.kafka_client import KafkaConsumer

        self.require_topics(topics)
        return KafkaConsumer(
            self,
            group_id,
            list(topics),
            on_assign=on_assign,
            on_revoke=on_revoke,
            auto_offset_reset=auto_offset_reset,
            client_id=client_id,
        )

    def close(self) -> None:
        """The admin client holds no group membership; dropping it is enough. Stops the
        group helper process if one was started."""
        self._admin.poll(0)
        if self._groups is not None:
            self._groups.close()

    def describe(self) -> dict[str, Any]:
        """What `topics describe`/health endpoints show about the connection (no secrets)."""
        md = self.metadata()
        return {
            "bootstrap": self.bootstrap,
            "brokers": sorted(md.brokers),
            "controller": md.controller_id,
            "security_protocol": self.settings.security_protocol,
        }
