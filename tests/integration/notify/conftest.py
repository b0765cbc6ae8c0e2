"""Real receivers for the notifier: an HTTP server and an SMTP server on 127.0.0.1,
and the event log (embedded, or Kafka when its fixture is there) with fresh topics."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from tests.conftest import require

from shopsentry.config import NotifierSettings, Settings, TopicSettings, TopicsSettings
from shopsentry.events.codec import encode
from shopsentry.events.schema import FeatureContribution, FraudAlert

SECRET = "test-webhook-secret"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """Answers ``statuses`` in turn (then ``then`` forever) and records every request."""

    statuses: list[int] = field(default_factory=list)
    then: int = 200
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.then

    def accepted(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.status < 300]


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.next_status()
            with receiver.lock:
                receiver.requests.append(
                    Request(self.path, dict(self.headers.items()), body, status)
                )
            receiver.arrived.set()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(rec))
    rec.url = f"http://127.0.0.1:{server.server_port}/hooks/fraud?token=abc"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(port=_free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(params=["local", "kafka"])
def bus(request: pytest.FixtureRequest) -> str:
    """The event log URL: the embedded log, or the Kafka test broker when available."""
    if request.param == "local":
        return "local"
    try:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
    except pytest.FixtureLookupError:
        require(
            False,
            "the kafka_bootstrap fixture",
            "add tests/integration/fixtures/kafka.py (scripts/kafka/)",
        )
    return f"kafka://{bootstrap}"


def make_settings(
    data_dir: Path, bus: str, receiver: Receiver | None, mailbox: Mailbox | None, **notifier: Any
) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicsSettings(
        fraud_alerts=TopicSettings(name=f"fraud-alerts-{suffix}", partitions=2),
        notifications_dead_letter=TopicSettings(name=f"notifications-dlq-{suffix}", partitions=1),
    ).with_replication(1)
    config: dict[str, Any] = {
        "group_id": f"notifier-{suffix}",
        "webhook_secret": SecretStr(SECRET),
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "max_attempts": 4,
        "webhook_timeout_s": 5.0,
    }
    if receiver is not None:
        config["webhook_urls"] = (receiver.url,)
    if mailbox is not None:
        config.update(
            smtp_host=mailbox.host, smtp_port=mailbox.port, email_to=("fraud-team@example.com",)
        )
    config.update(notifier)
    return Settings(data_dir=data_dir, bus=bus, topics=topics, notifier=NotifierSettings(**config))


def make_alert(i: int, severity: str) -> FraudAlert:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    return FraudAlert(
        event_id=f"evt-{i:04d}",
        alert_id=f"alert-evt-{i:04d}",
        source="web",
        user_id=f"user-{i % 3}",
        occurred_at=now,
        order_id=f"order-{i}",
        amount=100.0 + i,
        currency="USD",
        probability={"medium": 0.75, "high": 0.85, "critical": 0.97}[severity],
        severity=severity,  # type: ignore[arg-type]
        band="review" if severity != "critical" else "decline",
        model_version="3",
        top_features=(FeatureContribution(name="amount_vs_user_avg", value=8.5, contribution=0.4),),
        decided_at=now,
    )


def publish(settings: Settings, alerts: list[FraudAlert], extra: list[bytes] | None = None) -> None:
    from shopsentry.bus import BusConfig, open_log, topic_specs

    log = open_log(BusConfig.from_settings(settings))
    try:
        log.create_topics(topic_specs(settings.topics))
        producer = log.producer()
        for alert in alerts:
            producer.send(settings.topics.fraud_alerts.name, encode(alert), alert.user_id.encode())
        for raw in extra or []:
            producer.send(settings.topics.fraud_alerts.name, raw, b"user-x")
        producer.flush()
        producer.close()
    finally:
        log.close()
