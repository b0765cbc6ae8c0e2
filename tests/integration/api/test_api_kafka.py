"""The service on the production engine: a real Kafka broker behind the same API.

Ingest is acknowledged only after Kafka acknowledged the records (acks=all), the store
consumer follows alerts and decisions through a Kafka consumer group, and a review is
published to the reviews topic on Kafka.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings, TopicsSettings
from tests.unit.api.factories import make_keys, publish, purchase_json, scored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def unique_topics() -> TopicsSettings:
    """The configured topics under names of their own, replication 1 (single broker)."""
    suffix = uuid.uuid4().hex[:8]
    base = TopicsSettings().with_replication(1)
    return TopicsSettings(
        **{
            name: getattr(base, name).model_copy(
                update={"name": f"{getattr(base, name).name}-{suffix}"}
            )
            for name in type(base).model_fields
        }
    )


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    from shopsentry.bus import BusConfig, open_log, topic_specs

    settings = Settings(
        data_dir=tmp_path / "data", bus=f"kafka://{kafka_bootstrap}", topics=unique_topics()
    )
    admin = open_log(BusConfig.from_settings(settings))
    admin.create_topics(topic_specs(settings.topics))
    admin.close()
    yield settings


def drain(log: Any, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    consumer = log.consumer(None, [topic])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer.poll(max_records=1000, timeout=0.5))
    finally:
        consumer.close()
    return records


def test_ingest_alerts_and_reviews_over_kafka(kafka_settings: Settings) -> None:
    from shopsentry.api import create_app
    from shopsentry.bus import BusConfig, open_log

    settings = kafka_settings
    keys = make_keys(settings)
    log = open_log(BusConfig.from_settings(settings))
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").json()["checks"]["log"]["ok"] is True
            batch = [
                purchase_json("k-1", user_id="kafka-user"),
                purchase_json("k-2", user_id="kafka-user"),
            ]
            response = client.post("/v1/events", json=batch, headers=keys.header(keys.web))
            assert response.status_code == 202
            got = drain(log, settings.topics.purchase_events.name, 2)
            assert sorted(orjson.loads(r.value)["event_id"] for r in got) == ["k-1", "k-2"]
            assert {r.key for r in got} == {b"kafka-user"}

            publish(
                log, settings, [scored(i, user_id="kafka-user", probability=0.9) for i in range(3)]
            )
            h = keys.header(keys.analyst)
            wait_for(
                lambda: client.get("/v1/alerts", headers=h).json()["total"] == 3,
                "alerts through the Kafka consumer group",
                timeout=90,
            )

            # Alerts and decisions are separate topics: one can be consumed before the other.
            def decided() -> bool:
                detail = client.get("/v1/alerts/alert-ev-0001", headers=h).json()
                decisions = [item for item in detail["history"] if item["band"] is not None]
                return detail["decision"] is not None and len(decisions) == 3

            wait_for(decided, "the three decisions through the Kafka consumer group", timeout=90)
            detail = client.get("/v1/alerts/alert-ev-0001", headers=h).json()
            assert detail["decision"]["band"] == "review"

            reviewed = client.post(
                "/v1/alerts/alert-ev-0001/review", json={"verdict": "false_positive"}, headers=h
            )
            assert reviewed.status_code == 200
            reviews = drain(log, settings.topics.reviews.name, 1)
            assert [orjson.loads(r.value)["alert_id"] for r in reviews] == ["alert-ev-0001"]
    finally:
        log.close()
