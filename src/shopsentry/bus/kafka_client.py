"""Kafka producer and consumer behind the event-log Protocol (see :mod:`.kafka`).

Producer: records are queued by :meth:`KafkaProducer.send` and acknowledged by every
in-sync replica (acks=all, idempotent); :meth:`KafkaProducer.flush` returning means
durable, otherwise it raises :class:`ProduceError` saying how many records and why. When
a partition has fewer in-sync replicas than min.insync.replicas, librdkafka keeps
retrying until ``delivery_timeout_ms`` and then only says "timed out"; we look at the
partition's ISR to name the real cause (:class:`NotEnoughReplicasProduceError`).

Consumer: a classic-protocol group member with cooperative-sticky assignment and manual
commits. ``on_revoke`` runs before partitions leave, so the application can commit
what it processed; ``close`` leaves the group cleanly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, Message
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import Producer as CkProducer
from confluent_kafka import TopicPartition as CkTopicPartition

from shopsentry.bus.base import RebalanceCallback, Record, TopicPartition
from shopsentry.bus.kafka_config import (
    NOT_ENOUGH_REPLICAS_CODES,
    UNKNOWN_TOPIC_CODES,
    ErrorWatch,
    client_error,
    consumer_config,
    producer_config,
    redact,
    translate,
)
from shopsentry.errors import (
    BusError,
    CommitFailed,
    NotEnoughReplicasProduceError,
    ProduceError,
    ShopsentryError,
    UnknownTopic,
)

if TYPE_CHECKING:
    from shopsentry.bus.kafka import KafkaLog

logger = logging.getLogger(__name__)

_POLL_EVERY = 1000  # serve delivery callbacks every N sends: cheap, keeps memory flat
_MAX_REMEMBERED_FAILURES = 1000

_COMMIT_REFUSED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError.STALE_MEMBER_EPOCH,
    }
)


class KafkaProducer:
    """An idempotent acks=all producer; see the module docstring."""

    def __init__(self, log: KafkaLog) -> None:
        self._log = log
        self._watch = ErrorWatch(f"Kafka producer ({log.bootstrap})")
        conf = producer_config(log.bootstrap, log.settings)
        conf["error_cb"] = self._watch
        conf["on_delivery"] = self._on_delivery
        logger.debug("Kafka producer config: %s", redact(conf))
        try:
            self._producer = CkProducer(conf)
        except KafkaException as exc:
            raise client_error(exc, "producer") from None
        self._known_topics: set[str] = set()
        self._since_poll = 0
        self._failed = 0
        self._failures: list[tuple[int, str, str, int]] = []  # code, text, topic, partition
        self.acknowledged = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaProducer(bootstrap={self._log.bootstrap!r}, acknowledged={self.acknowledged})"

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.acknowledged += 1
            return
        self._failed += 1
        if len(self._failures) < _MAX_REMEMBERED_FAILURES:
            self._failures.append((err.code(), err.str(), msg.topic() or "", msg.partition() or 0))

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        if self._closed:
            raise BusError("send on a closed producer")
        if topic not in self._known_topics:
            # librdkafka would only fail an unknown topic's records after a long timeout.
            self._log.require_topics([topic])
            self._known_topics.add(topic)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition if partition is not None else -1,  # -1: the partitioner picks
                    timestamp=timestamp_ms or 0,  # 0: now
                    headers=list(headers) if headers else None,
                )
                break
            except BufferError:
                # The local queue is full: let librdkafka deliver, then try again.
                self._producer.poll(0.05)
                self._check_fatal()
            except KafkaException as exc:
                raise translate(
                    exc.args[0], bootstrap=self._log.bootstrap, topic=topic, action="produce"
                ) from None
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            self._producer.poll(0)

    def _check_fatal(self) -> None:
        self._watch.raise_if_auth_failed(self._log.bootstrap)
        if self._watch.fatal_error is not None:
            err = self._watch.fatal_error
            raise ProduceError(
                f"the producer hit a fatal error: {err.str()} ({err.name()})",
                failed=len(self._producer),
                retryable=False,
                hint="create a new producer",
            )

    def flush(self, timeout: float = 30.0) -> None:
        """Return when every record sent so far is acknowledged by all in-sync replicas;
        raise ProduceError (or NotEnoughReplicasProduceError) if any was not."""
        remaining = self._producer.flush(timeout)
        self._since_poll = 0
        failed, failures = self._failed, self._failures
        self._failed, self._failures = 0, []
        if failed:
            raise self._failure_error(failed, failures)
        if remaining:
            self._watch.raise_if_auth_failed(self._log.bootstrap)
            raise ProduceError(  # transient: librdkafka keeps them queued and retrying
                f"{remaining} record(s) not acknowledged within {timeout:.0f}s",
                failed=remaining,
                retryable=True,
                hint="the brokers are slow or unreachable; they are still being retried",
            )

    def _failure_error(
        self, failed: int, failures: list[tuple[int, str, str, int]]
    ) -> ShopsentryError:
        codes = {code for code, _, _, _ in failures}
        where = sorted({TopicPartition(t, p) for _, _, t, p in failures})
        shown = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in where[:6])
        if codes & NOT_ENOUGH_REPLICAS_CODES:
            return NotEnoughReplicasProduceError(
                f"{failed} record(s) refused: not enough in-sync replicas for {shown} "
                "(NOT_ENOUGH_REPLICAS)",
                failed=failed,
                hint="brokers are down; writes resume when enough replicas are back in sync",
            )
        if codes & UNKNOWN_TOPIC_CODES:
            return UnknownTopic(where[0].topic)
        if KafkaError._MSG_TIMED_OUT in codes:
            # librdkafka retried NOT_ENOUGH_REPLICAS (or a dead leader) until the delivery
            # timeout: ask the cluster which of the two it was.
            try:
                short = self._log.under_min_isr(where)
            except ShopsentryError:
                short = []
            if short:
                detail = "; ".join(
                    f"{tp.topic}[{tp.partition}]: {isr} in sync, min.insync.replicas={m}"
                    for tp, isr, m in short[:6]
                )
                return NotEnoughReplicasProduceError(
                    f"{failed} record(s) not acknowledged: not enough in-sync replicas ({detail})",
                    failed=failed,
                    hint="brokers are down; writes resume when enough replicas are back in sync",
                )
            self._watch.raise_if_auth_failed(self._log.bootstrap)
            return ProduceError(  # transient: sending them again can succeed
                f"{failed} record(s) not acknowledged within the delivery timeout "
                f"({self._log.settings.delivery_timeout_ms} ms) for {shown}",
                failed=failed,
                retryable=True,
                hint="the partition leaders were unreachable; send them again",
            )
        text = failures[0][1] if failures else "unknown error"
        fatal = self._watch.fatal_error is not None
        return ProduceError(
            f"{failed} record(s) failed for {shown}: {' '.join(text.split())}",
            failed=failed,
            retryable=not fatal,
        )

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush(self._log.settings.delivery_timeout_ms / 1000)
        finally:
            self._closed = True


class KafkaConsumer:
    """A consumer-group member (or, with ``group_id=None``, a reader of every partition)."""

    def __init__(
        self,
        log: KafkaLog,
        group_id: str | None,
        topics: list[str],
        *,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
        auto_offset_reset: str,
        client_id: str | None,
    ) -> None:
        self._log = log
        self._group_id = group_id
        self._topics = topics
        self._user_assign = on_assign
        self._user_revoke = on_revoke
        self._watch = ErrorWatch(f"Kafka consumer {group_id or '(no group)'} ({log.bootstrap})")
        conf = consumer_config(log.bootstrap, log.settings, group_id, auto_offset_reset, client_id)
        conf["error_cb"] = self._watch
        conf["on_commit"] = self._on_commit
        logger.debug("Kafka consumer config: %s", redact(conf))
        try:
            self._consumer = CkConsumer(conf)
        except KafkaException as exc:
            raise client_error(exc, "consumer") from None
        self._positions: dict[TopicPartition, int] = {}
        self._closed = False
        if group_id is not None:
            self._consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        else:
            start = OFFSET_BEGINNING if auto_offset_reset == "earliest" else OFFSET_END
            tps = [CkTopicPartition(t, p, start) for t in topics for p in log.partitions_of(t)]
            self._consumer.assign(tps)
            if on_assign is not None:
                on_assign([TopicPartition(tp.topic, tp.partition) for tp in tps])

    def __repr__(self) -> str:
        return f"KafkaConsumer(group={self._group_id!r}, topics={self._topics!r})"

    # Rebalance callbacks: librdkafka runs them inside consume(); after on_assign returns,
    # confluent-kafka performs the incremental assignment itself.
    def _on_assign(self, _consumer: CkConsumer, partitions: list[CkTopicPartition]) -> None:
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        logger.info("%s assigned %s", self, tps)
        if self._user_assign is not None and tps:
            self._user_assign(tps)

    def _on_revoke(self, _consumer: CkConsumer, partitions: list[CkTopicPartition]) -> None:
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        logger.info("%s revoked %s", self, tps)
        try:
            if self._user_revoke is not None and tps:
                self._user_revoke(tps)  # still ours: the application may commit now
        finally:
            for tp in tps:
                self._positions.pop(tp, None)

    def _on_lost(self, consumer: CkConsumer, partitions: list[CkTopicPartition]) -> None:
        # As Java's default onPartitionsLost: tell the application the partitions left
        # (a commit inside will fail with CommitFailed: another member owns them now).
        logger.warning(
            "%s lost %s (session expired)", self, [(p.topic, p.partition) for p in partitions]
        )
        self._on_revoke(consumer, partitions)

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        if self._closed:
            raise BusError("poll on a closed consumer")
        # librdkafka's consume(n, timeout) waits until it has n messages OR the timeout
        # passes, so one call with the caller's timeout would hold a half-full batch for
        # the whole timeout (added latency at moderate load). The interface promises to
        # wait only for the FIRST record: take what the client has already fetched
        # without blocking; only if that is nothing, block for one record; then drain
        # what arrived with it, again without blocking.
        wanted = max(1, max_records)
        consume = self._consumer.consume
        messages = consume(num_messages=wanted, timeout=0)
        if not messages and timeout > 0:
            messages = consume(num_messages=1, timeout=timeout)
            if messages and wanted > 1:
                messages.extend(consume(num_messages=wanted - 1, timeout=0))
        records: list[Record] = []
        append = records.append
        last: dict[tuple[str, int], int] = {}  # the hot loop: plain tuples, few calls
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(err, msg)
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            value = msg.value()
            raw_headers = msg.headers()
            append(
                Record(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    timestamp_ms=msg.timestamp()[1],
                    key=msg.key(),
                    value=value if value is not None else b"",
                    headers=_headers(raw_headers) if raw_headers else (),
                )
            )
            last[topic, partition] = offset
        for (topic, partition), offset in last.items():
            self._positions[TopicPartition(topic, partition)] = offset + 1
        if not messages:
            self._watch.raise_if_auth_failed(self._log.bootstrap)
        return records

    def _on_error(self, err: KafkaError, msg: Message) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code in UNKNOWN_TOPIC_CODES:
            raise UnknownTopic(msg.topic() or "?")
        if err.fatal() or code in {
            KafkaError._AUTHENTICATION,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
        }:
            raise translate(err, bootstrap=self._log.bootstrap, topic=msg.topic(), action="consume")
        logger.warning("consumer error on %s[%s]: %s", msg.topic(), msg.partition(), err.str())

    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        """A synchronous commit waits for the group coordinator (milliseconds); an
        asynchronous one is queued in librdkafka, sent in order, and a failure is logged
        by :meth:`_on_commit`."""
        if self._group_id is None:
            return  # no group: there is nowhere to commit to (by design)
        if offsets is None:
            current = self.assignment()
            offsets = {tp: pos for tp, pos in self._positions.items() if tp in current}
        if not offsets:
            return
        request = [CkTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        if asynchronous:
            try:
                self._consumer.commit(offsets=request, asynchronous=True)
            except KafkaException as exc:
                raise translate(
                    exc.args[0], bootstrap=self._log.bootstrap, action="commit"
                ) from None
            return
        try:
            result = self._consumer.commit(offsets=request, asynchronous=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                return
            if err.code() in _COMMIT_REFUSED:
                raise CommitFailed(
                    f"commit refused: the group rebalanced ({err.name()})",
                    hint="the partitions moved to another member, which redelivers their records",
                ) from None
            raise translate(err, bootstrap=self._log.bootstrap, action="commit") from None
        for tp in result or []:
            if tp.error is not None:
                raise CommitFailed(
                    f"commit of {tp.topic}[{tp.partition}] refused: {tp.error.str()}"
                )

    def _on_commit(self, err: KafkaError | None, partitions: list[CkTopicPartition]) -> None:
        """librdkafka's report on a commit (served from poll): log what failed. A commit
        refused because the group is rebalancing is routine (the next owner starts from
        the previous commit): debug level; anything else is a warning."""
        errors = [err] if err is not None else [tp.error for tp in partitions or [] if tp.error]
        for error in errors:
            if error.code() == KafkaError._NO_OFFSET:
                continue
            level = logging.DEBUG if error.code() in _COMMIT_REFUSED else logging.WARNING
            logger.log(level, "%r: commit failed: %s", self, error.str())
            return

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(
            TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()
        )

    def seek(self, tp: TopicPartition, offset: int) -> None:
        target = CkTopicPartition(tp.topic, tp.partition, offset)
        deadline = time.monotonic() + self._log.settings.connect_timeout_s
        while True:
            try:
                self._consumer.seek(target)
                break
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() != KafkaError._STATE:
                    raise translate(
                        err, bootstrap=self._log.bootstrap, topic=tp.topic, action="seek"
                    ) from None
                if tp not in self.assignment():
                    raise BusError(
                        f"cannot seek {tp.topic}[{tp.partition}]: not assigned to this consumer"
                    ) from None
                if time.monotonic() >= deadline:
                    raise BusError(f"cannot seek {tp.topic}[{tp.partition}]: {err.str()}") from None
                # Assigned but its fetcher is not started yet: give librdkafka a moment.
                time.sleep(0.05)
        self._positions[tp] = offset

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        assigned = sorted(self.assignment())
        if not assigned:
            return
        query = [CkTopicPartition(tp.topic, tp.partition, timestamp_ms) for tp in assigned]
        timeout = self._log.settings.request_timeout_ms / 1000
        try:
            found = self._consumer.offsets_for_times(query, timeout=timeout)
        except KafkaException as exc:
            raise translate(
                exc.args[0], bootstrap=self._log.bootstrap, action="offsets_for_times"
            ) from None
        for ck_tp in found:
            tp = TopicPartition(ck_tp.topic, ck_tp.partition)
            offset = ck_tp.offset
            if offset < 0:  # nothing at or after the timestamp: start at the end
                _, offset = self._consumer.get_watermark_offsets(
                    ck_tp, timeout=timeout, cached=False
                )
            self.seek(tp, offset)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets. Not from inside a rebalance callback: librdkafka
        cannot fetch offsets while the rebalance waits on that callback (it times out);
        ``commit()`` there is fine."""
        if not tps:
            return {}
        if self._group_id is None:
            return {tp: None for tp in tps}
        request = [CkTopicPartition(tp.topic, tp.partition) for tp in tps]
        try:
            result = self._consumer.committed(
                request, timeout=self._log.settings.request_timeout_ms / 1000
            )
        except KafkaException as exc:
            raise translate(
                exc.args[0], bootstrap=self._log.bootstrap, action="reading committed offsets"
            ) from None
        return {
            TopicPartition(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in result
        }

    def close(self) -> None:
        """Leave the group: librdkafka runs the revoke callback, then sends LeaveGroup so
        the partitions move to the other members at once (no session timeout wait)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except KafkaException as exc:
            logger.warning("closing %s: %s", self, exc.args[0].str())


def _headers(
    raw: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None],
) -> tuple[tuple[str, bytes], ...]:
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple(
        (str(k), v if isinstance(v, bytes) else (v.encode() if v else b"")) for k, v in items
    )
