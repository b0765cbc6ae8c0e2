"""SASL/SCRAM-SHA-512 on the test node's extra listener: the right credentials work, a
wrong password is refused quickly with one line that names the cause (and never echoes
the password)."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from pydantic import SecretStr

from shopsentry.bus import TopicSpec
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from shopsentry.errors import AuthenticationFailed
from tests.integration.fixtures.kafka import SaslEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def _settings(sasl: SaslEndpoint, password: str, user: str | None = None) -> KafkaSettings:
    return KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user or sasl.username,
        sasl_password=SecretStr(password),
        connect_timeout_s=10,
    )


def test_right_credentials_produce_and_consume(kafka_sasl: SaslEndpoint) -> None:
    log = KafkaLog(kafka_sasl.bootstrap, _settings(kafka_sasl, kafka_sasl.password))
    topic = f"auth-ok-{uuid.uuid4().hex[:8]}"
    log.create_topics([TopicSpec(topic, partitions=1, replication_factor=1, min_insync_replicas=1)])
    producer = log.producer()
    producer.send(topic, b'{"hello":"scram"}', b"user-1")
    producer.flush()
    consumer = log.consumer(f"auth-group-{uuid.uuid4().hex[:6]}", [topic])
    try:
        records = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            records = consumer.poll(timeout=0.5)
        consumer.commit()
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"user-1", b'{"hello":"scram"}')]


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("user", [None, "nobody-here"], ids=["wrong-password", "unknown-user"])
def test_wrong_credentials_are_refused_with_one_line_naming_the_cause(
    kafka_sasl: SaslEndpoint, user: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]
    log = KafkaLog(kafka_sasl.bootstrap, _settings(kafka_sasl, wrong, user))
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationFailed) as caught:
        log.list_topics()
    line = caught.value.one_line()
    assert "refused our credentials" in line
    assert "SCRAM-SHA-512" in line or "credentials" in line
    assert "\n" not in line
    # Refused as soon as the broker says so: an auth error, not "no broker answered"
    # after the connect timeout (pytest-timeout below bounds the whole test).
    assert "no Kafka broker answered" not in line
    assert wrong not in line
    assert wrong not in caplog.text
    assert wrong not in repr(log)
    assert not caught.value.retryable
    with pytest.raises(AuthenticationFailed):
        log.producer()
