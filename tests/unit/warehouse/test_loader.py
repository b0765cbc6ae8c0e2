"""The RAW loader: every topic lands in its table with the raw JSON kept, nothing twice
(reruns, redeliveries, crashes between the DuckDB and the log commits, retries after a
failure part-way), bad records kept for quarantine, and history backfills."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import CommitFailed
from shopsentry.warehouse import history, loader
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.history import load_history
from shopsentry.warehouse.loader import LoaderConfig, load_from_log, raw_counts
from tests.unit.warehouse.conftest import publish
from tests.unit.warehouse.factories import BAD_PURCHASES

TABLE_OF_TOPIC = {
    "purchase-events": "purchase_events",
    "user-behavior": "user_behavior",
    "fraud-alerts": "fraud_alerts",
    "decisions": "decisions",
    "fraud-labels": "fraud_labels",
    "alert-reviews": "reviews",
}


def expected_counts(events) -> dict[str, int]:
    return {TABLE_OF_TOPIC[t]: events.count(t) for t in TABLE_OF_TOPIC}


def test_every_topic_lands_in_its_raw_table_with_the_json_kept(settings, memlog, events) -> None:
    publish(memlog, events)
    result = load_from_log(LoaderConfig.from_settings(settings))
    assert result.records_read == sum(events.count(t) for t in TABLE_OF_TOPIC)
    with connect(settings.warehouse_path, read_only=True) as con:
        assert raw_counts(con) == expected_counts(events)
        stored = con.execute(
            "select raw_json::varchar, occurred_at, user_id, source from raw.purchase_events "
            "where event_id = 'p00003'"
        ).fetchall()
    purchase = next(p for p in events.purchases if p.event_id == "p00003")
    assert json.loads(stored[0][0]) == json.loads(purchase.model_dump_json())
    assert stored[0][1] == purchase.occurred_at.replace(tzinfo=None)
    assert stored[0][2:] == (purchase.user_id, purchase.source)


def test_offsets_are_recorded_in_duckdb_and_committed_to_the_log(settings, memlog, events) -> None:
    publish(memlog, events)
    load_from_log(LoaderConfig.from_settings(settings))
    with connect(settings.warehouse_path, read_only=True) as con:
        recorded = loader.recorded_offsets(con, settings.warehouse.loader_group_id)
    ends = {
        TopicPartition(t, p): len(part)
        for t, parts in memlog.data.items()
        if t in TABLE_OF_TOPIC
        for p, part in enumerate(parts)
        if part
    }
    assert {tp: o for tp, o in recorded.items() if tp in ends} == ends
    group = settings.warehouse.loader_group_id
    assert {tp: memlog.committed[(group, tp)] for tp in ends} == ends


def test_rerun_and_new_records_load_only_what_is_new(settings, memlog, events) -> None:
    publish(memlog, events)
    load_from_log(LoaderConfig.from_settings(settings))
    again = load_from_log(LoaderConfig.from_settings(settings))
    assert again.records_read == 0 and again.rows_inserted == 0
    memlog.append(
        "purchase-events", events.by_topic["purchase-events"][0][1], b"u000"
    )  # a redelivery
    memlog.append(
        "user-behavior",
        b'{"event_id": "late1", "event_type": "login", "source": "web", '
        b'"user_id": "u000", "occurred_at": "2026-11-22T00:00:00+00:00"}',
        b"u000",
    )
    third = load_from_log(LoaderConfig.from_settings(settings))
    assert third.records_read == 2
    assert third.inserted == {"user_behavior": 1}
    with connect(settings.warehouse_path, read_only=True) as con:
        counts = raw_counts(con)
    assert counts["purchase_events"] == events.count("purchase-events")
    assert counts["user_behavior"] == events.count("user-behavior") + 1


def test_duckdb_not_the_log_decides_where_to_resume(settings, memlog, events) -> None:
    """The group's committed offsets are lost or ahead: DuckDB's offsets still rule."""
    publish(memlog, events)
    load_from_log(LoaderConfig.from_settings(settings))
    memlog.committed.clear()  # the log forgot the group: would redeliver everything
    assert load_from_log(LoaderConfig.from_settings(settings)).records_read == 0
    settings.warehouse_path.unlink()  # a fresh warehouse while the group is at the end
    reloaded = load_from_log(LoaderConfig.from_settings(settings))
    assert reloaded.records_read == sum(events.count(t) for t in TABLE_OF_TOPIC)
    with connect(settings.warehouse_path, read_only=True) as con:
        assert raw_counts(con) == expected_counts(events)


def test_crash_between_duckdb_commit_and_log_commit_adds_no_duplicates(
    settings, memlog, events, monkeypatch
) -> None:
    from tests.fakes.log import MemoryConsumer

    publish(memlog, events)

    def refuse(self, offsets=None, *, asynchronous=False):
        raise CommitFailed("the group rebalanced")

    monkeypatch.setattr(MemoryConsumer, "commit", refuse)
    first = load_from_log(LoaderConfig.from_settings(settings))
    assert first.rows_inserted == first.records_read
    assert settings.warehouse.loader_group_id not in {g for g, _ in memlog.committed}
    monkeypatch.undo()
    from shopsentry import bus

    monkeypatch.setattr(bus, "open_log", lambda _settings, **_kw: memlog)
    second = load_from_log(LoaderConfig.from_settings(settings))
    assert second.rows_inserted == 0
    with connect(settings.warehouse_path, read_only=True) as con:
        assert raw_counts(con) == expected_counts(events)


def test_a_failure_part_way_is_retried_without_duplicates(
    settings, memlog, events, monkeypatch
) -> None:
    publish(memlog, events)
    real = loader.load_records
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_records", flaky)
    with pytest.raises(OSError):
        load_from_log(LoaderConfig.from_settings(settings), batch_records=40, poll_records=40)
    with connect(settings.warehouse_path, read_only=True) as con:
        partial = sum(raw_counts(con).values())
    assert 0 < partial < sum(events.count(t) for t in TABLE_OF_TOPIC)
    retried = load_from_log(LoaderConfig.from_settings(settings), batch_records=40, poll_records=40)
    assert retried.rows_inserted == sum(events.count(t) for t in TABLE_OF_TOPIC) - partial
    with connect(settings.warehouse_path, read_only=True) as con:
        assert raw_counts(con) == expected_counts(events)
        dupes = con.execute(
            "select count(*) from (select _dedupe_key from raw.user_behavior"
            " group by 1 having count(*) > 1)"
        ).fetchall()
    assert dupes == [(0,)]


def test_bad_records_are_kept_for_quarantine(settings, memlog) -> None:
    for key, value in BAD_PURCHASES:
        memlog.append("purchase-events", value, key)
    load_from_log(LoaderConfig.from_settings(settings))
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select _dedupe_key, event_id, raw_json is null, raw_text from raw.purchase_events"
        ).fetchall()
    by_key = {r[0]: r for r in rows}
    assert len(rows) == len(BAD_PURCHASES)
    not_json = [r for r in rows if r[2]]
    assert len(not_json) == 2
    assert all(r[0].startswith("bad:purchase-events:") and r[1] is None for r in not_json)
    assert {r[3] for r in not_json} == {"{not json", "\ufffd\ufffd not utf8"}
    assert by_key["neg1"][2] is False and by_key["str1"][2] is False


def test_history_backfill_routes_by_type_and_is_idempotent(settings, tmp_path, events) -> None:
    from shopsentry.events.codec import decode_as

    events_rows = []
    for topic in ("purchase-events", "user-behavior"):
        for _key, value in events.by_topic[topic]:
            doc = json.loads(value)
            events_rows.append(
                {
                    "event_id": doc["event_id"],
                    "event_type": doc["event_type"],
                    "user_id": doc["user_id"],
                    "source": doc["source"],
                    "occurred_at": doc["occurred_at"],
                    "raw_json": value.decode(),
                }
            )
    table = pa.Table.from_pylist(events_rows).set_column(
        4,
        "occurred_at",
        pa.array([r["occurred_at"] for r in events_rows]).cast(pa.timestamp("us", tz="UTC")),
    )
    history = tmp_path / "history"
    history.mkdir()
    pq.write_table(table, history / "events.parquet")
    labels = [json.loads(v) for _k, v in events.by_topic["fraud-labels"]]
    pq.write_table(
        pa.table(
            {
                "event_id": [x["event_id"] for x in labels],
                "order_id": [x["order_id"] for x in labels],
                "user_id": [x["user_id"] for x in labels],
                "source": [x["source"] for x in labels],
                "is_fraud": [x["is_fraud"] for x in labels],
                "scenario": [x["scenario"] for x in labels],
                "label_source": [x["label_source"] for x in labels],
                "occurred_at": pa.array([x["occurred_at"] for x in labels]).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "known_at": pa.array([x["known_at"] for x in labels]).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        history / "labels.parquet",
    )
    (history / "reviews.jsonl").write_bytes(
        b"\n".join(v for _k, v in events.by_topic["alert-reviews"]) + b"\n"
    )

    first = load_history(settings.warehouse_path, history)
    assert first.inserted == {
        "purchase_events": events.count("purchase-events"),
        "user_behavior": events.count("user-behavior"),
        "fraud_labels": events.count("fraud-labels"),
        "reviews": events.count("alert-reviews"),
    }
    assert load_history(settings.warehouse_path, history).rows_inserted == 0
    with connect(settings.warehouse_path, read_only=True) as con:
        label_json = con.execute(
            "select raw_json::varchar from raw.fraud_labels limit 1"
        ).fetchall()[0][0]
    label = decode_as("label", label_json)  # the rebuilt JSON is a valid Label event
    original = next(x for x in labels if x["event_id"] == label.event_id)
    assert label.is_fraud == original["is_fraud"] and label.known_at == datetime.fromisoformat(
        original["known_at"]
    )


def test_history_errors_are_clear(settings, tmp_path) -> None:
    with pytest.raises(history.HistoryError, match="does not exist"):
        load_history(settings.warehouse_path, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(history.HistoryError, match=r"no \.parquet or \.jsonl"):
        load_history(settings.warehouse_path, tmp_path / "empty")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "odd.parquet")
    with pytest.raises(history.HistoryError, match="neither a raw_json column"):
        load_history(settings.warehouse_path, tmp_path / "odd.parquet")


def test_texts_keeps_invalid_utf8_visible() -> None:
    array = loader.texts_array([b'{"a": 1}', b"\xff oops"])
    assert array.to_pylist() == ['{"a": 1}', "\ufffd oops"]
