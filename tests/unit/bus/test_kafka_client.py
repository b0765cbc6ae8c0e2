"""The Kafka producer's flush errors say whether sending again can help: records not
acknowledged in time (no broker listening here) are a transient condition, never a reason
for a worker to stop for good. A real librdkafka producer, pointed at a closed port."""

from __future__ import annotations

import socket

import pytest

from shopsentry.bus.kafka import KafkaLog
from shopsentry.bus.kafka_client import KafkaProducer
from shopsentry.config import KafkaSettings
from shopsentry.errors import ProduceError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def _producer(**settings: object) -> KafkaProducer:
    log = KafkaLog(f"127.0.0.1:{_closed_port()}", KafkaSettings(connect_timeout_s=1.0, **settings))
    producer = KafkaProducer(log)
    producer._known_topics.add("purchase-events")  # no broker to ask whether it exists
    return producer


@pytest.mark.parametrize(
    ("delivery_timeout_ms", "flush_timeout", "says"),
    [
        (120_000, 0.5, "not acknowledged within"),  # still queued when flush gives up
        (1_000, 30.0, "delivery timeout"),  # librdkafka gave up on them
    ],
)
def test_records_not_acknowledged_in_time_are_a_retryable_error(
    delivery_timeout_ms: int, flush_timeout: float, says: str
) -> None:
    producer = _producer(delivery_timeout_ms=delivery_timeout_ms)
    for i in range(10):
        producer.send("purchase-events", b"{}", f"user-{i}".encode())
    with pytest.raises(ProduceError) as caught:
        producer.flush(timeout=flush_timeout)
    assert caught.value.retryable
    assert caught.value.failed == 10
    assert says in caught.value.one_line()
