"""The RAW loader against a real Kafka broker: its own consumer group drains every topic
into DuckDB, a rerun reads nothing, and a warehouse rebuilt from scratch re-reads the
topics from the start even though the group's committed offsets are at the end."""

from __future__ import annotations

import uuid

import pytest

from shopsentry.warehouse.db import connect
from shopsentry.warehouse.loader import LoaderConfig, load_from_log, raw_counts
from tests.unit.warehouse.factories import make_events

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path):
    from shopsentry.config import Settings, TopicsSettings, WarehouseSettings

    unique = uuid.uuid4().hex[:8]
    topics = TopicsSettings().with_replication(1)
    renamed = TopicsSettings(
        **{
            name: getattr(topics, name).model_copy(
                update={"name": f"wh-{unique}-{getattr(topics, name).name}"}
            )
            for name in type(topics).model_fields
        }
    )
    return Settings(
        data_dir=tmp_path / "data",
        bus=f"kafka://{kafka_bootstrap}",
        topics=renamed,
        warehouse=WarehouseSettings(loader_group_id=f"warehouse-loader-{unique}"),
    )


def test_loader_drains_kafka_once_and_duckdb_decides_where_to_resume(kafka_settings) -> None:
    from shopsentry.bus import BusConfig, open_log, topic_specs

    settings = kafka_settings
    events = make_events(purchases=30)
    canonical = {t.name.split("-", 2)[2]: t.name for t in settings.topics.all()}
    log = open_log(BusConfig.from_settings(settings))
    try:
        log.create_topics(topic_specs(settings.topics))
        producer = log.producer()
        for topic, records in events.by_topic.items():
            for key, value in records:
                producer.send(canonical[topic], value, key)
        producer.flush()
        producer.close()
    finally:
        log.close()
    total = sum(len(r) for r in events.by_topic.values())

    first = load_from_log(LoaderConfig.from_settings(settings))
    assert first.records_read == total and first.rows_inserted == total
    assert load_from_log(LoaderConfig.from_settings(settings)).records_read == 0

    settings.warehouse_path.unlink()  # rebuild the warehouse; the group stays at the end
    again = load_from_log(LoaderConfig.from_settings(settings))
    assert again.records_read == total
    with connect(settings.warehouse_path, read_only=True) as con:
        counts = raw_counts(con)
    assert counts["purchase_events"] == events.count("purchase-events")
    assert counts["user_behavior"] == events.count("user-behavior")
    assert counts["reviews"] == events.count("alert-reviews")
