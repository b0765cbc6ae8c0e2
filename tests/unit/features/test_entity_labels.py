"""The label consumer: labels and reviews from the log into the entity store, as a
handler on the stream runtime (positions saved with the labels, fenced)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shopsentry.bus import BusConfig, open_log
from shopsentry.bus.base import EventLog, Record, TopicPartition
from shopsentry.config import Settings
from shopsentry.errors import StateFenced
from shopsentry.events.codec import encode
from shopsentry.events.schema import Label, Review
from shopsentry.features.entity_labels import (
    LabelConsumerConfig,
    LabelHandler,
    label_runtime,
    labels_of,
)
from shopsentry.features.entity_store import EntityLabelSink, EntityPurchase, LmdbEntityStore
from shopsentry.features.offline import KnownLabel
from shopsentry.stream.base import Checkpoint
from shopsentry.stream.runtime import StreamRuntime

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


def run_until(runtime: StreamRuntime, done: Callable[[], bool]) -> None:
    """Run the label runtime in a thread until ``done()`` holds (generous timeout)."""
    thread = threading.Thread(target=runtime.run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done():
            time.sleep(0.02)
    finally:
        runtime.request_stop()
        thread.join(timeout=60)
    assert done()


def test_the_consumer_applies_labels_to_the_purchase_entities(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    log = open_log(BusConfig.from_settings(settings))
    store = LmdbEntityStore(tmp_path / "entities.lmdb")
    store.apply_purchases([EntityPurchase("ev-1", "u1", 10.0, T0.timestamp(), ("card:c1",))])
    producer = log.producer()
    producer.send(settings.topics.labels.name, encode(label("ev-1")))
    producer.send(settings.topics.labels.name, b"{not json")  # skipped, the stream goes on
    producer.send(settings.topics.reviews.name, encode(review("ev-9", "confirmed_fraud")))
    producer.flush()
    labels_tp = TopicPartition(settings.topics.labels.name, 0)
    reviews_tp = TopicPartition(settings.topics.reviews.name, 0)
    runtime = label_runtime(LabelConsumerConfig.from_settings(settings), log, store)
    run_until(runtime, lambda: store.positions([labels_tp, reviews_tp]) == {
        labels_tp: 2, reviews_tp: 1
    })  # fmt: skip
    assert list(store.load(["card:c1"])["card:c1"].frauds) == ["ev-1"]
    assert runtime.consumer is not None and isinstance(runtime.handler, LabelHandler)
    assert runtime.handler.labels == 2  # the bad record was not a label
    # ev-9's purchase comes later: its review waited in the store and applies with it
    store.apply_purchases([EntityPurchase("ev-9", "u2", 5.0, T0.timestamp(), ("card:c1",))])
    assert set(store.load(["card:c1"])["card:c1"].frauds) == {"ev-1", "ev-9"}
    store.close()
    log.close()


def read_all(log: EventLog, topic: str) -> list[Record]:
    consumer = log.consumer(None, [topic])
    try:
        records: list[Record] = []
        while not records:
            records = consumer.poll(max_records=100, timeout=1.0)
        return records
    finally:
        consumer.close()


def test_a_restart_resumes_at_the_stored_positions_not_the_group_commit(tmp_path: Path) -> None:
    """The positions live with the entity state: after a consumer saved a label and died
    before committing its offset, the next one reads nothing twice, and a review later
    withdrawing the fraud is applied after it."""
    settings = Settings(data_dir=tmp_path)
    log = open_log(BusConfig.from_settings(settings))
    store = LmdbEntityStore(tmp_path / "entities.lmdb")
    store.apply_purchases([EntityPurchase("ev-1", "u1", 10.0, T0.timestamp(), ("card:c1",))])
    labels_tp = TopicPartition(settings.topics.labels.name, 0)
    reviews_tp = TopicPartition(settings.topics.reviews.name, 0)
    producer = log.producer()
    producer.send(settings.topics.labels.name, encode(label("ev-1")))
    producer.flush()
    # a consumer that saved the label and its position, then died before its commit
    known = labels_of(read_all(log, labels_tp.topic), "alert-reviews")
    EntityLabelSink(store).save(
        Checkpoint(changes=known, positions={labels_tp: 1}, expected={labels_tp: 0}, outbox_id="x")
    )
    producer.send(settings.topics.reviews.name, encode(review("ev-1", "false_positive")))
    producer.flush()
    handler_runtime = label_runtime(LabelConsumerConfig.from_settings(settings), log, store)
    run_until(handler_runtime, lambda: store.positions([reviews_tp]) == {reviews_tp: 1})
    assert isinstance(handler_runtime.handler, LabelHandler)
    assert handler_runtime.handler.labels == 1  # only the review: the label was not re-read
    assert store.load(["card:c1"])["card:c1"].frauds == {}
    producer.close()
    store.close()
    log.close()


def test_a_save_from_behind_the_stored_positions_is_fenced_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = LmdbEntityStore(tmp_path / "entities.lmdb")
    sink = EntityLabelSink(store)
    store.apply_purchases([EntityPurchase("ev-1", "u1", 10.0, T0.timestamp(), ("card:c1",))])
    tp = TopicPartition("fraud-labels", 0)
    known = KnownLabel("ev-1", True, T0.timestamp() + 60)
    sink.save(Checkpoint(changes=[], positions={tp: 5}, expected={tp: 0}, outbox_id="a"))
    with pytest.raises(StateFenced):  # another member applied up to 5 meanwhile
        sink.save(Checkpoint(changes=[known], positions={tp: 3}, expected={tp: 2}, outbox_id="b"))
    assert sink.positions([tp]) == {tp: 5}
    assert store.load(["card:c1"])["card:c1"].frauds == {}  # the label was not applied
    sink.save(Checkpoint(changes=[known], positions={tp: 6}, expected={tp: 5}, outbox_id="c"))
    assert sink.positions([tp]) == {tp: 6} and list(store.load(["card:c1"])["card:c1"].frauds)
    assert sink.outbox([tp]) == []
    store.close()
