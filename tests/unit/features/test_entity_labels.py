"""The label consumer: labels and reviews from the log into the entity store."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopsentry.bus import open_log
from shopsentry.bus.base import Record
from shopsentry.config import Settings
from shopsentry.events.codec import encode
from shopsentry.events.schema import Label, Review
from shopsentry.features.entity_labels import labels_of, run_label_consumer
from shopsentry.features.entity_store import EntityPurchase, LmdbEntityStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def label(event_id: str, fraud: bool = True) -> Label:
    return Label(
        event_id=event_id,
        source="pos",
        user_id="u1",
        occurred_at=T0,
        order_id="o-" + event_id,
        is_fraud=fraud,
        known_at=T0 + timedelta(days=3),
    )


def review(event_id: str, verdict: str) -> Review:
    return Review(
        alert_id="alert-" + event_id,
        event_id=event_id,
        user_id="u1",
        verdict=verdict,  # type: ignore[arg-type]
        reviewed_at=T0 + timedelta(hours=2),
    )


def test_labels_of_reads_labels_and_reviews_and_skips_bad_records() -> None:
    records = [
        Record("fraud-labels", 0, 0, 0, None, encode(label("ev-1"))),
        Record("alert-reviews", 0, 0, 0, None, encode(review("ev-2", "false_positive"))),
        Record("fraud-labels", 0, 1, 0, None, b"{not json"),
    ]
    got = labels_of(records, "alert-reviews")
    assert [(x.event_id, x.is_fraud) for x in got] == [("ev-1", True), ("ev-2", False)]
    assert got[0].known_at == (T0 + timedelta(days=3)).timestamp()
    assert got[1].known_at == (T0 + timedelta(hours=2)).timestamp()


def test_the_consumer_applies_labels_to_the_purchase_entities(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    log = open_log(settings)
    store = LmdbEntityStore(tmp_path / "entities.lmdb")
    store.apply_purchases([EntityPurchase("ev-1", "u1", 10.0, T0.timestamp(), ("card:c1",))])
    producer = log.producer()
    producer.send(settings.topics.labels.name, encode(label("ev-1")))
    producer.send(settings.topics.reviews.name, encode(review("ev-9", "confirmed_fraud")))
    producer.flush()
    stop = threading.Event()
    thread = threading.Thread(
        target=run_label_consumer,
        args=(log, store),
        kwargs={
            "group_id": "detector-labels",
            "labels_topic": settings.topics.labels.name,
            "reviews_topic": settings.topics.reviews.name,
            "stop": stop,
        },
    )
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not store.load(["card:c1"])["card:c1"].frauds:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=60)
    assert list(store.load(["card:c1"])["card:c1"].frauds) == ["ev-1"]
    store.close()
    log.close()
