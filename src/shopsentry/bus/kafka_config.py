"""librdkafka configuration from :class:`~shopsentry.config.KafkaSettings`, and the
translation of librdkafka errors into shopsentry's one-line errors.

Kept apart from the clients so the mapping (and the rule that secrets never reach a
log line or a repr) can be unit-tested without a broker.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from shopsentry.config import KafkaSettings
from shopsentry.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    BusError,
    ConfigError,
    NotEnoughReplicas,
    ShopsentryError,
    UnknownTopic,
)

logger = logging.getLogger(__name__)
librdkafka_logger = logging.getLogger("shopsentry.bus.librdkafka")

_SECRET_MARKERS = ("password", "secret", "token", "key.pem", "sasl.oauthbearer.config")
REDACTED = "***"
_WARN_AFTER_S = 15.0  # errors persisting this long are logged as warnings
_WARN_EVERY_S = 30.0
_STREAK_GAP_S = 30.0

AUTH_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError._SSL,
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
UNKNOWN_TOPIC_CODES = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
NOT_ENOUGH_REPLICAS_CODES = frozenset(
    {KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND}
)
# The cluster moving under us (a broker died or rejoined): retrying later helps.
TRANSIENT_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_CONTROLLER,
        KafkaError.REBALANCE_IN_PROGRESS,
    }
)


def common_config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    """Settings every client (producer, consumer, admin) shares: address and security."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        "socket.connection.setup.timeout.ms": int(settings.connect_timeout_s * 1000),
        "reconnect.backoff.max.ms": 2000,
        # librdkafka's own log lines go through Python logging (at DEBUG, see
        # _LibrdkafkaLog); the errors that matter reach us through error_cb.
        "logger": _LibrdkafkaLog(),
    }
    if settings.security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = settings.sasl_mechanism
        if settings.sasl_username is not None:
            conf["sasl.username"] = settings.sasl_username
        if settings.sasl_password is not None:
            conf["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.ssl_ca_location is not None:
        conf["ssl.ca.location"] = str(settings.ssl_ca_location)
    return conf


def producer_config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    """No acknowledged record may be lost: acks from every in-sync replica, idempotence so
    retries neither duplicate nor reorder, murmur2 so keys land where Java clients and
    the embedded log put them."""
    conf = common_config(bootstrap, settings)
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5,
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size,
            "compression.type": settings.compression_type,
            "partitioner": "murmur2_random",
            "request.timeout.ms": settings.request_timeout_ms,
            "message.timeout.ms": settings.delivery_timeout_ms,
            "queue.buffering.max.messages": 500_000,
        }
    )
    return conf


def consumer_config(
    bootstrap: str,
    settings: KafkaSettings,
    group_id: str | None,
    auto_offset_reset: str,
    client_id: str | None,
) -> dict[str, Any]:
    """Manual commits after processing, cooperative rebalancing so a member joining or
    leaving only moves the partitions that must move."""
    if auto_offset_reset not in {"earliest", "latest"}:
        raise BusError(
            f"auto_offset_reset must be 'earliest' or 'latest', not {auto_offset_reset!r}"
        )
    conf = common_config(bootstrap, settings)
    conf.update(
        {
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 100,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 4),
        }
    )
    if client_id:
        conf["client.id"] = client_id
    if group_id is not None:
        conf.update(
            {
                "group.id": group_id,
                "group.protocol": "classic",
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
    else:
        # librdkafka wants a group id even for assign()-only consumers; nothing ever
        # joins or commits to it.
        conf["group.id"] = f"{settings.client_id}-unassigned"
    return conf


def admin_config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    conf = common_config(bootstrap, settings)
    conf["request.timeout.ms"] = settings.request_timeout_ms  # not a producer-only key here
    return conf


def redact(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``conf`` that is safe to log: secret values masked, callbacks named."""
    out: dict[str, Any] = {}
    for key, value in conf.items():
        if any(marker in key for marker in _SECRET_MARKERS):
            out[key] = REDACTED
        elif callable(value) or isinstance(value, _LibrdkafkaLog):
            out[key] = f"<{type(value).__name__}>"
        else:
            out[key] = value
    return out


class _LibrdkafkaLog:
    """Receives librdkafka's log lines (confluent-kafka calls ``.log(level, fmt, *args)``).

    They go to DEBUG: a dead broker makes librdkafka repeat the same connection failure
    every few hundred milliseconds, and the one-line errors we raise say it better.
    """

    def log(self, level: int, msg: str, *args: object) -> None:
        if librdkafka_logger.isEnabledFor(logging.DEBUG):
            librdkafka_logger.debug(msg, *args)


class ErrorWatch:
    """An ``error_cb`` that remembers what went wrong, so a timeout can be explained
    (auth failure vs. nobody listening) instead of reported as a bare timeout."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = threading.Lock()
        self.auth_error: KafkaError | None = None
        self.last_error: KafkaError | None = None
        self.fatal_error: KafkaError | None = None
        self._last_logged = float("-inf")
        self._streak_start: float | None = None
        self._streak_last = 0.0

    def __call__(self, err: KafkaError) -> None:
        now = time.monotonic()
        with self._lock:
            self.last_error = err
            if err.code() in AUTH_CODES:
                self.auth_error = err
            if err.fatal():
                self.fatal_error = err
            if self._streak_start is None or now - self._streak_last > _STREAK_GAP_S:
                self._streak_start = now  # a new run of errors after a quiet spell
            self._streak_last = now
            persistent = now - self._streak_start >= _WARN_AFTER_S
            due = now - self._last_logged >= _WARN_EVERY_S
            if persistent and due:
                self._last_logged = now
        # A blip (a broker restarting, a short call that raises its own one-line error)
        # stays at DEBUG; a broker gone for a while is worth a warning twice a minute.
        if persistent and due:
            logger.warning("%s: %s", self.what, _short(err.str()))
        else:
            logger.debug("%s: %s", self.what, _short(err.str()))

    def raise_if_auth_failed(self, bootstrap: str) -> None:
        if self.auth_error is not None:
            raise auth_error(self.auth_error, bootstrap)


def auth_error(err: KafkaError, bootstrap: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"Kafka at {bootstrap} refused our credentials: {_short(err.str())}",
        hint="check kafka.sasl_username / kafka.sasl_password / kafka.sasl_mechanism",
    )


def unavailable_error(bootstrap: str, seconds: float, err: KafkaError | None) -> BrokerUnavailable:
    cause = f" (last error: {_short(err.str())})" if err is not None else ""
    return BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} within {seconds:.0f}s{cause}",
        hint="is the broker running and is --bus kafka://host:port right?",
    )


def translate(
    err: KafkaError, *, bootstrap: str, topic: str | None = None, action: str
) -> ShopsentryError:
    """A librdkafka error as the shopsentry error a caller can act on."""
    code = err.code()
    if code in AUTH_CODES:
        return auth_error(err, bootstrap)
    if code in UNKNOWN_TOPIC_CODES and topic is not None:
        return UnknownTopic(topic)
    if code in UNAVAILABLE_CODES:
        return BrokerUnavailable(
            f"{action} failed: Kafka at {bootstrap} did not answer ({_short(err.str())})",
            hint="is the broker running and is --bus kafka://host:port right?",
        )
    if code in NOT_ENOUGH_REPLICAS_CODES:
        return NotEnoughReplicas(
            f"{action} refused: not enough in-sync replicas ({err.name()})",
            hint="a broker is down; writes resume when it rejoins",
        )
    error = BusError(f"{action} failed: {_short(err.str())} ({err.name()})")
    # librdkafka knows which of the rest are worth retrying (a leader or coordinator
    # moving, a request timed out): those are transient here too.
    error.retryable = bool(err.retriable()) or code in TRANSIENT_CODES
    return error


def _short(text: str) -> str:
    """librdkafka messages can span lines; our errors are one line."""
    return " ".join(text.split())


def client_error(exc: KafkaException, what: str) -> ConfigError:
    """librdkafka refused to build a client: a setting is wrong (e.g. no CA file)."""
    err: KafkaError = exc.args[0]
    return ConfigError(
        f"cannot create the Kafka {what}: {_short(err.str())}",
        hint="check the kafka.* settings (security_protocol, ssl_ca_location, sasl_*)",
    )
