"""Kafka client configuration from settings, error translation, and the rule that the
SASL password never shows up in a repr or a log line. No broker needed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from pydantic import SecretStr

from shopsentry.bus.kafka_config import (
    REDACTED,
    ErrorWatch,
    admin_config,
    consumer_config,
    producer_config,
    redact,
    translate,
)
from shopsentry.config import KafkaSettings, Settings
from shopsentry.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    BusError,
    ConfigError,
    NotEnoughReplicas,
    UnknownTopic,
)

PASSWORD = "hunter2-very-secret"


def _sasl() -> KafkaSettings:
    return KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-shopsentry",
        sasl_password=SecretStr(PASSWORD),
        ssl_ca_location=Path("/etc/ssl/ca.pem"),
    )


def test_producer_is_durable_idempotent_and_uses_the_java_partitioner() -> None:
    settings = KafkaSettings(
        compression_type="zstd", linger_ms=20, batch_size=65_536, delivery_timeout_ms=30_000
    )
    conf = producer_config("b1:9092,b2:9092", settings)
    assert conf["bootstrap.servers"] == "b1:9092,b2:9092"
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["partitioner"] == "murmur2_random"
    assert (conf["compression.type"], conf["linger.ms"], conf["batch.size"]) == ("zstd", 20, 65_536)
    assert conf["message.timeout.ms"] == 30_000
    assert conf["max.in.flight.requests.per.connection"] <= 5  # idempotence needs <= 5


def test_group_consumer_is_classic_cooperative_sticky_with_manual_commits() -> None:
    conf = consumer_config(
        "b:9092", KafkaSettings(session_timeout_ms=12_000), "fraud-detector", "latest", "worker-1"
    )
    assert conf["group.id"] == "fraud-detector"
    assert conf["group.protocol"] == "classic"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["enable.auto.commit"] is False
    assert conf["auto.offset.reset"] == "latest"
    assert conf["session.timeout.ms"] == 12_000
    assert conf["heartbeat.interval.ms"] < conf["session.timeout.ms"]
    assert conf["client.id"] == "worker-1"


def test_consumer_rejects_an_unknown_offset_reset() -> None:
    with pytest.raises(BusError, match="auto_offset_reset"):
        consumer_config("b:9092", KafkaSettings(), "g", "smallest", None)


def test_security_settings_are_mapped() -> None:
    conf = admin_config("b:9093", _sasl())
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc-shopsentry"
    assert conf["sasl.password"] == PASSWORD  # librdkafka needs the real value...
    assert conf["ssl.ca.location"] == "/etc/ssl/ca.pem"
    plain = admin_config("b:9092", KafkaSettings())
    assert plain["security.protocol"] == "PLAINTEXT"
    assert not any(k.startswith("sasl.") for k in plain)


def test_redact_masks_secrets_but_keeps_the_rest() -> None:
    shown = redact(producer_config("b:9093", _sasl()))
    assert shown["sasl.password"] == REDACTED  # ...but nothing we print or log has it
    assert shown["sasl.username"] == "svc-shopsentry"
    assert shown["acks"] == "all"
    assert PASSWORD not in repr(shown)


def test_kafka_log_repr_and_debug_logs_never_contain_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shopsentry.bus.kafka import KafkaLog

    settings = _sasl().model_copy(
        update={"security_protocol": "SASL_PLAINTEXT", "ssl_ca_location": None}
    )
    with caplog.at_level(logging.DEBUG, logger="shopsentry"):
        log = KafkaLog("127.0.0.1:9", settings)
    assert "svc-shopsentry" in repr(log)
    assert PASSWORD not in repr(log)
    assert "Kafka admin client config" in caplog.text
    assert REDACTED in caplog.text
    assert PASSWORD not in caplog.text


def test_a_missing_ca_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    from shopsentry.bus.kafka import KafkaLog

    settings = _sasl().model_copy(update={"ssl_ca_location": tmp_path / "missing-ca.pem"})
    with pytest.raises(ConfigError, match="cannot create the Kafka admin client") as caught:
        KafkaLog("127.0.0.1:9", settings)
    assert PASSWORD not in caught.value.one_line()


def test_settings_dump_from_env_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPSENTRY_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("SHOPSENTRY_BUS", "kafka://127.0.0.1:9092")
    settings = Settings()
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.redacted())


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError._AUTHENTICATION, AuthenticationFailed),
        (KafkaError.SASL_AUTHENTICATION_FAILED, AuthenticationFailed),
        (KafkaError._TRANSPORT, BrokerUnavailable),
        (KafkaError._ALL_BROKERS_DOWN, BrokerUnavailable),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, UnknownTopic),
        (KafkaError.NOT_ENOUGH_REPLICAS, NotEnoughReplicas),
        (KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, NotEnoughReplicas),
        (KafkaError.INVALID_REQUEST, BusError),
    ],
)
def test_librdkafka_errors_become_one_line_shopsentry_errors(code: int, expected: type) -> None:
    err = KafkaError(code, "first line\nsecond line")
    error = translate(err, bootstrap="b:9092", topic="purchase-events", action="produce")
    assert type(error) is expected
    assert "\n" not in error.one_line()


def test_error_watch_remembers_an_auth_failure_to_explain_a_timeout() -> None:
    watch = ErrorWatch("test client")
    watch(KafkaError(KafkaError._TRANSPORT, "connection refused"))
    watch.raise_if_auth_failed("b:9092")  # a transport error alone is not an auth failure
    watch(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    with pytest.raises(AuthenticationFailed, match="refused our credentials"):
        watch.raise_if_auth_failed("b:9092")


def test_error_watch_warns_only_when_errors_persist(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shopsentry.bus.kafka_config as kc

    now = [1000.0]
    monkeypatch.setattr(kc.time, "monotonic", lambda: now[0])
    watch = ErrorWatch("consumer X")
    down = KafkaError(KafkaError._TRANSPORT, "Connect to 127.0.0.1:9092 failed")
    with caplog.at_level(logging.DEBUG, logger="shopsentry.bus.kafka_config"):
        watch(down)  # a blip: not worth a warning
        now[0] += 5
        watch(down)
        assert [r.levelname for r in caplog.records] == ["DEBUG", "DEBUG"]
        now[0] += 15  # still failing 20 s after the first error
        watch(down)
        now[0] += 1
        watch(down)  # and not again for the next 30 s
    levels = [r.levelname for r in caplog.records]
    assert levels == ["DEBUG", "DEBUG", "WARNING", "DEBUG"]
    assert "consumer X" in caplog.records[2].getMessage()


class _FakeLog:
    """What KafkaProducer needs from KafkaLog to explain failures, without a broker."""

    bootstrap = "127.0.0.1:9"
    settings = KafkaSettings(delivery_timeout_ms=5_000)

    def __init__(self, short: list) -> None:  # type: ignore[type-arg]
        self.short = short

    def under_min_isr(self, tps: list) -> list:  # type: ignore[type-arg]
        return self.short


@pytest.mark.parametrize(
    ("code", "short", "expected"),
    [
        (KafkaError.NOT_ENOUGH_REPLICAS, [], "NotEnoughReplicasProduceError"),
        (KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, [], "NotEnoughReplicasProduceError"),
        (KafkaError._MSG_TIMED_OUT, "isr", "NotEnoughReplicasProduceError"),
        (KafkaError._MSG_TIMED_OUT, [], "ProduceError"),
        (KafkaError.MSG_SIZE_TOO_LARGE, [], "ProduceError"),
    ],
)
def test_failed_deliveries_are_explained(code: int, short: object, expected: str) -> None:
    from shopsentry.bus.base import TopicPartition
    from shopsentry.bus.kafka_client import KafkaProducer
    from shopsentry.errors import ProduceError

    tp = TopicPartition("purchase-events", 1)
    log = _FakeLog([(tp, 1, 2)] if short == "isr" else [])
    producer = KafkaProducer(log)  # type: ignore[arg-type]
    error = producer._failure_error(4, [(code, "Broker: boom", tp.topic, tp.partition)] * 4)
    assert type(error).__name__ == expected
    assert isinstance(error, ProduceError)
    assert error.failed == 4
    assert "purchase-events[1]" in error.one_line()
    assert isinstance(error, NotEnoughReplicas) == (expected == "NotEnoughReplicasProduceError")
    if short == "isr":
        assert "1 in sync, min.insync.replicas=2" in error.one_line()


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (KafkaError.NOT_COORDINATOR, True),
        (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, True),
        (KafkaError._MSG_TIMED_OUT, True),
        (KafkaError.INVALID_REQUEST, False),
    ],
)
def test_other_errors_are_retryable_when_the_cluster_is_only_moving(
    code: int, retryable: bool
) -> None:
    error = translate(KafkaError(code), bootstrap="b:9092", action="commit")
    assert type(error) is BusError
    assert error.retryable is retryable
