"""What the detector integration tests share: one trained champion per session, settings
for each backend (embedded log + SQLite state, or Kafka + Redis), and helpers to publish
records, read a topic back and scrape a worker's metrics."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shopsentry.bus.base import EventLog, Record
from shopsentry.config import Settings
from shopsentry.models.scorer import ModelFiles
from shopsentry.models.training import TrainingConfig

START = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 21
VALIDATION_DAYS = 7
SIM = {"users": 2000, "seed": 3, "fraud_share": 0.03}


@dataclass(frozen=True)
class Champion:
    """A model trained once per session on simulator history, ready to be pointed at."""

    model_path: Path
    sha256: str
    feature_names: tuple[str, ...]
    report: dict[str, Any]
    history: Path


def simulator(days: float = HISTORY_DAYS) -> Any:
    from shopsentry.simulator import Simulator, SimulatorConfig

    return Simulator(
        SimulatorConfig(start=START, duration_s=days * 86400, events_per_hour=None, **SIM)  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory, mlflow_tracking_uri: str) -> Champion:
    """Train (≈20 s) on 21 simulated days of 2,000 users; the last 7 days are validation."""
    from shopsentry.config import ModelSettings
    from shopsentry.models.scorer import read_pointer
    from shopsentry.models.training import train_and_register
    from shopsentry.simulator import write_history

    root = tmp_path_factory.mktemp("detector-champion")
    settings = Settings(
        data_dir=root / "data",
        model=ModelSettings(
            name=f"detector-{uuid.uuid4().hex[:8]}",
            experiment=f"detector-{uuid.uuid4().hex[:8]}",
            tracking_uri=mlflow_tracking_uri,
            validation_days=VALIDATION_DAYS,
        ),
    )
    history = root / "history"
    write_history(simulator(), history)
    result = train_and_register(TrainingConfig.from_settings(settings), history=history)
    assert result.promoted, result.reason
    pointer = read_pointer(ModelFiles.from_settings(settings))
    assert pointer is not None
    return Champion(
        Path(pointer.model_path), pointer.sha256, pointer.feature_names, result.report, history
    )


def promote(
    settings: Settings, champion: Champion, version: str, *, sha256: str | None = None
) -> None:
    """Point ``settings``' data dir at ``champion`` as version ``version`` (what the
    registry does on promotion); a wrong ``sha256`` makes a version that fails to load."""
    from shopsentry.models.scorer import write_pointer

    write_pointer(
        ModelFiles.from_settings(settings),
        settings.model.name,
        version,
        champion.model_path,
        sha256 or champion.sha256,
        champion.feature_names,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["local", "kafka+redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend on a fresh data dir, with unique topic and group names
    on the shared Kafka node, and short timeouts so failover tests stay quick."""
    unique = uuid.uuid4().hex[:8]
    overrides: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "log_session_timeout_ms": 2000,
        "detector": {"group_id": f"fraud-detector-{unique}", "model_poll_interval_s": 0.3},
    }
    if request.param == "kafka+redis":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        redis_url = request.getfixturevalue("redis_url")
        from shopsentry.config import TopicsSettings

        base = TopicsSettings().with_replication(1)
        topics = {
            name: getattr(base, name).model_copy(
                update={"name": f"{getattr(base, name).name}-{unique}"}
            )
            for name in type(base).model_fields
        }
        overrides |= {
            "bus": f"kafka://{bootstrap}",
            "topics": topics,
            "state": {"backend": "redis", "redis_url": redis_url},
            "kafka": {"session_timeout_ms": 6000},
        }
    settings = Settings(**overrides)
    from shopsentry.bus import BusConfig, open_log, topic_specs

    log = open_log(BusConfig.from_settings(settings))
    log.create_topics(topic_specs(settings.topics))
    log.close()
    return settings


def produce(log: EventLog, items: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send (topic, key, value) records and flush; returns how many."""
    producer = log.producer()
    n = 0
    for topic, key, value in items:
        producer.send(topic, value, key)
        n += 1
    producer.flush()
    producer.close()
    return n


def read_topic(log: EventLog, topic: str, *, idle_s: float = 1.0) -> list[Record]:
    """Every record of ``topic`` (no group), read until nothing came for ``idle_s``."""
    consumer = log.consumer(None, [topic])
    out: list[Record] = []
    try:
        while True:
            batch = consumer.poll(max_records=5000, timeout=idle_s)
            if not batch:
                return out
            out.extend(batch)
    finally:
        consumer.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def events_processed(settings: Settings, port: int) -> float:
    """Input events a worker's metrics endpoint counts as processed, both topics."""
    text = scrape(port)
    topics = (settings.topics.purchase_events.name, settings.topics.user_behavior.name)
    return sum(metric(text, f'shopsentry_events_processed_total{{topic="{t}"}}') for t in topics)


def metric(text: str, line_prefix: str) -> float:
    """The value of the first exposition line starting with ``line_prefix`` (0 if none)."""
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
