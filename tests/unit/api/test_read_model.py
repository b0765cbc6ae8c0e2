"""The alert read model as a stream sink: one verdict with the detector on what a purchase
is, positions stored with the rows, fenced against a second writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsentry.api.read_model import AlertReadModel
from shopsentry.bus.base import Record, TopicPartition
from shopsentry.config import Settings
from shopsentry.detection.hot_path import HotPath
from shopsentry.detection.worker import hot_path_config
from shopsentry.errors import StateFenced
from shopsentry.events.codec import encode
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.stream.base import Checkpoint
from tests.unit.detection.fakes import FakeOps, FakeScorer, login, purchase

PT = "purchase-events"
TOPICS = {"purchases": PT, "behavior": "user-behavior", "decisions": "decisions"}
LIMIT = 1024


def records() -> list[Record]:
    rows = [
        (encode(purchase(0, "u0")), b"u0"),  # fine
        (encode(purchase(1, "u1")), None),  # no key
        (encode(purchase(2, "u2")), b"someone-else"),  # wrong key
        (encode(purchase(3, "u3")) + b" " * LIMIT, b"u3"),  # valid JSON over the size limit
        (encode(login(4, "u4")), b"u4"),  # not a purchase
    ]
    return [Record(PT, 0, i, 0, key, value) for i, (value, key) in enumerate(rows)]


def test_the_read_model_stores_exactly_the_purchases_the_detector_decides(tmp_path: Path) -> None:
    model = AlertReadModel(tmp_path / "alerts.db", topics=TOPICS, max_event_bytes=LIMIT)
    batch = records()
    model.save(Checkpoint(batch, {TopicPartition(PT, 0): 5}, {}, "x"))
    stored = {row[0] for row in model.query("select event_id from purchases")}

    settings = Settings(data_dir=tmp_path / "d", detector={"max_event_bytes": LIMIT})
    store = LmdbStateStore(tmp_path / "s.lmdb")
    try:
        outcome = HotPath(hot_path_config(settings.topics, settings.detector), FakeOps()).process(
            batch, {}, FakeScorer(), store
        )
    finally:
        store.close()
    decided = {o.value for o in outcome.outputs if o.topic == "decisions"}
    assert stored == {"p-u0-0"}
    assert len(decided) == 1 and sum(outcome.dead_letters.values()) == 4
    assert model.positions([TopicPartition(PT, 0), TopicPartition(PT, 1)]) == {
        TopicPartition(PT, 0): 5
    }
    model.close()


def test_a_second_writer_behind_the_stored_positions_is_fenced_out(tmp_path: Path) -> None:
    model = AlertReadModel(tmp_path / "alerts.db", topics=TOPICS)
    tp = TopicPartition(PT, 0)
    model.save(Checkpoint(records()[:1], {tp: 1}, {tp: 0}, "a"))
    with pytest.raises(StateFenced):
        model.save(Checkpoint(records()[:1], {tp: 1}, {tp: 0}, "b"))
    assert model.query("select count(*) from traffic")[0][0] == 1  # nothing written twice
    model.close()


def test_a_read_model_made_before_the_rules_column_gets_it(tmp_path: Path) -> None:
    """An alerts table from an older release: opening it adds the column, old rows read
    back with no rules, new ones with theirs."""
    import sqlite3

    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "create table alerts (alert_id text primary key, event_id text not null unique,"
            " user_id text not null, order_id text not null, amount real not null,"
            " currency text not null, source text not null, probability real not null,"
            " severity text not null, band text not null, model_version text not null,"
            " top_features text not null, occurred_ms integer not null,"
            " decided_ms integer not null, status text not null default 'open', verdict text,"
            " note text, reviewer text, reviewed_ms integer)"
        )
        db.execute(
            "insert into alerts (alert_id, event_id, user_id, order_id, amount, currency,"
            " source, probability, severity, band, model_version, top_features, occurred_ms,"
            " decided_ms) values ('a-1', 'e-1', 'u', 'o', 1.0, 'USD', 'web', 0.9, 'high',"
            " 'review', '3', '[]', 0, 0)"
        )
    model = AlertReadModel(path, topics=TOPICS, max_event_bytes=LIMIT)
    old = model.get_alert("a-1")
    assert old is not None and "rules_fired" not in old and old["alert_id"] == "a-1"
    AlertReadModel(path, topics=TOPICS, max_event_bytes=LIMIT)  # opening again: no error
