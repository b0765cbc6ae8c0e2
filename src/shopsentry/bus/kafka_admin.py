"""Bounded admin requests to a Kafka cluster: the layer :class:`~shopsentry.bus.kafka.KafkaLog`
is built on.

Every call that talks to the cluster is bounded: the first use probes the brokers for at
most ``connect_timeout_s`` and turns silence into :class:`BrokerUnavailable`, refused
credentials into :class:`AuthenticationFailed`; admin requests wait at most
``request_timeout_ms``, retrying meanwhile while the cluster moves under them (a dead
broker still cached as controller or leader, a leader being elected, a topic the
brokers do not all know yet). Nothing blocks forever on a broker that is gone.

:class:`KafkaAdmin` holds the admin client and offers that probe (:meth:`metadata`),
the retrying request (:meth:`_call`) and the partitions' offsets
(:meth:`watermarks`); the topics, groups and clients of the event log are in
:mod:`shopsentry.bus.kafka`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    OffsetSpec,
)

from shopsentry.bus.base import TopicPartition
from shopsentry.bus.kafka_config import (
    ErrorWatch,
    admin_config,
    client_error,
    redact,
    translate,
    unavailable_error,
)
from shopsentry.config import KafkaSettings
from shopsentry.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a topic the brokers do not all know yet (created a moment ago, or a broker
# replaying the metadata log after a restart) is asked about again before it is unknown.
UNKNOWN_TOPIC_GRACE_S = 3.0

_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_LEADER_MOVING: frozenset[int] = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
    }
)
_ADMIN_RETRY: frozenset[int] = _LEADER_MOVING | {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}
_OFFSETS_RETRY: frozenset[int] = _ADMIN_RETRY | {KafkaError.UNKNOWN_TOPIC_OR_PART}


class KafkaAdmin:
    """An admin client on the cluster at ``bootstrap`` whose every request is bounded."""

    def __init__(self, bootstrap: str, settings: KafkaSettings | None = None) -> None:
        if not bootstrap.strip():
            raise ConfigError("empty Kafka bootstrap address", hint="use --bus kafka://host:port")
        self.bootstrap = bootstrap
        self.settings = settings or KafkaSettings()
        self._watch = ErrorWatch(f"Kafka admin client ({bootstrap})")
        conf = admin_config(bootstrap, self.settings)
        conf["error_cb"] = self._watch
        logger.debug("Kafka admin client config: %s", redact(conf))
        try:
            self._admin = AdminClient(conf)
        except KafkaException as exc:
            raise client_error(exc, "admin client") from None
        self._reachable = False
        self._timeout = self.settings.request_timeout_ms / 1000
        # How long an admin call keeps retrying while the cluster moves (a dead broker
        # still cached as controller/leader): long enough for a failover, still bounded.
        self._admin_deadline = max(self._timeout, self.settings.connect_timeout_s, 10.0)

    # -- reachability ------------------------------------------------------------------
    def metadata(self, topic: str | None = None) -> ClusterMetadata:
        """Cluster metadata, probing for at most ``connect_timeout_s``; auth failures
        are reported as soon as the broker refuses us, not at the end of the wait."""
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                md = self._admin.list_topics(topic=topic, timeout=max(0.1, min(1.0, remaining)))
            except KafkaException as exc:
                self._admin.poll(0)  # serve error_cb so the watch learns why
                self._watch.raise_if_auth_failed(self.bootstrap)
                if time.monotonic() >= deadline:
                    raise unavailable_error(
                        self.bootstrap,
                        self.settings.connect_timeout_s,
                        self._watch.last_error or exc.args[0],
                    ) from None
                continue
            self._reachable = True
            return md

    def ensure_reachable(self) -> None:
        """Probe once per log; producers and consumers call this before they are built."""
        if not self._reachable:
            self.metadata()

    def _call(
        self, submit: Callable[[float], Future[T]], action: str, topic: str | None = None
    ) -> T:
        """Run one admin request, retrying while the cluster is moving under us (a dead
        broker still cached as controller or leader), within ``request_timeout_ms``."""
        deadline = time.monotonic() + self._admin_deadline
        grace = time.monotonic() + UNKNOWN_TOPIC_GRACE_S
        while True:
            attempt = max(1.0, min(self._timeout / 3, deadline - time.monotonic()))
            try:
                return submit(attempt).result(timeout=attempt + 2)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                self._admin.poll(0)
                self._watch.raise_if_auth_failed(self.bootstrap)
                young = time.monotonic() < grace  # brokers may not all know a new topic yet
                retry = err.code() in _ADMIN_RETRY or (
                    young and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                )
                if retry and time.monotonic() < deadline:
                    logger.debug("%s: %s; retrying", action, err.str())
                    self._refresh_metadata()
                    continue
                raise translate(err, bootstrap=self.bootstrap, topic=topic, action=action) from None
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
                raise unavailable_error(
                    self.bootstrap, self._timeout, self._watch.last_error
                ) from None

    def _refresh_metadata(self) -> None:
        """Make librdkafka learn the current controller and leaders before a retry."""
        try:
            self._admin.list_topics(timeout=1.0)
        except KafkaException:
            time.sleep(0.2)

    # -- offsets ---------------------------------------------------------------------
    def watermarks(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """(low, high) watermark of each partition: earliest kept offset and next offset."""
        if not tps:
            return {}
        out: dict[TopicPartition, list[int]] = {tp: [0, 0] for tp in tps}
        for index, spec in ((0, _EARLIEST), (1, _LATEST)):
            pending = list(tps)
            deadline = time.monotonic() + self._admin_deadline
            while pending:
                attempt = max(1.0, min(self._timeout / 3, deadline - time.monotonic()))
                req = {CkTopicPartition(tp.topic, tp.partition): spec for tp in pending}
                futures = self._admin.list_offsets(req, request_timeout=attempt)
                retry: list[TopicPartition] = []
                for ck_tp, future in futures.items():
                    tp = TopicPartition(ck_tp.topic, ck_tp.partition)
                    try:
                        info = future.result(timeout=attempt + 2)
                    except (KafkaException, TimeoutError) as exc:
                        # A leader that just moved, died or was just elected: ask again
                        # (with fresh metadata) until the deadline.
                        err = exc.args[0] if isinstance(exc, KafkaException) else None
                        # A partition of a topic created a moment ago may not have
                        # reached its leader yet: "unknown" is transient here.
                        transient = err is None or err.code() in _OFFSETS_RETRY
                        if transient and time.monotonic() < deadline:
                            retry.append(tp)
                            continue
                        self._admin.poll(0)
                        self._watch.raise_if_auth_failed(self.bootstrap)
                        if err is None:
                            raise unavailable_error(
                                self.bootstrap, self._timeout, self._watch.last_error
                            ) from None
                        raise translate(
                            err, bootstrap=self.bootstrap, topic=tp.topic, action="listing offsets"
                        ) from None
                    out[tp][index] = max(0, info.offset)
                pending = retry
                if pending:
                    self._refresh_metadata()
        return {tp: (lo, hi) for tp, (lo, hi) in out.items()}
