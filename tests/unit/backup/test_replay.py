"""The restore's ledger: the decisions on the log since the backup, and the detector
keeping them instead of deciding a replayed purchase again."""

from __future__ import annotations

import orjson
import pytest

from shopsentry.backup.replay import (
    Ledger,
    ReplayedDecisions,
    decided_since,
    load_ledger,
    purchase_ends,
    write_ledger,
)
from shopsentry.bus.base import Record
from shopsentry.detection.routing import OutRecord


def _decide(memlog, settings, event_id: str, user: str) -> None:
    value = orjson.dumps({"event_type": "decision", "event_id": event_id, "user_id": user})
    memlog.append(settings.topics.decisions.name, value, user.encode())


def test_decided_since_reads_from_the_backup_offsets_to_the_end(memlog, settings):
    users = [f"u{i:03d}" for i in range(12)]
    for i, user in enumerate(users):
        _decide(memlog, settings, f"before-{i}", user)
    topic = settings.topics.decisions.name
    at_backup = {
        f"{topic}:{p.partition}": p.end_offset for p in memlog.describe_topic(topic).partitions
    }
    for i, user in enumerate(users):
        _decide(memlog, settings, f"after-{i}", user)

    assert decided_since(settings, at_backup) == {f"after-{i}" for i in range(12)}
    # A partition the backup recorded nothing for is read from its start.
    assert decided_since(settings, {}) == {
        f"{w}-{i}" for w in ("before", "after") for i in range(12)
    }


def test_decided_since_is_empty_when_nothing_was_decided_after(memlog, settings):
    _decide(memlog, settings, "e1", "u001")
    topic = settings.topics.decisions.name
    ends = {f"{topic}:{p.partition}": p.end_offset for p in memlog.describe_topic(topic).partitions}
    assert decided_since(settings, ends) == set()


def test_the_ledger_is_replaced_by_each_write(settings):
    assert load_ledger(settings) == Ledger()
    assert write_ledger(settings, Ledger({"b", "a"}, {0: 7, 1: 3})) == 2
    assert load_ledger(settings) == Ledger({"a", "b"}, {0: 7, 1: 3})
    write_ledger(settings, Ledger({"c"}, {0: 9}))
    assert load_ledger(settings) == Ledger({"c"}, {0: 9})


def test_the_ledger_ends_where_the_purchases_ended_at_the_restore(memlog, settings):
    topic = settings.topics.purchase_events.name
    memlog.append(topic, b"{}", b"u001", partition=1)
    memlog.append(topic, b"{}", b"u001", partition=1)
    ends = purchase_ends(settings)
    assert ends[1] == 2 and ends[0] == 0


def _out(topic: str, event_id: str) -> OutRecord:
    return OutRecord(topic, b"u1", orjson.dumps({"event_id": event_id}))


@pytest.fixture
def replayed() -> ReplayedDecisions:
    ledger = Ledger({"old-1", "old-2"}, {0: 10})
    return ReplayedDecisions(ledger, ("decisions", "alerts"), "purchases")


def test_only_a_batch_with_purchases_below_the_restores_end_is_looked_at(replayed):
    def record(topic: str, partition: int, offset: int) -> Record:
        return Record(topic, partition, offset, 0, b"u1", b"{}")

    assert replayed.replays([record("purchases", 0, 9), record("purchases", 0, 10)])
    assert not replayed.replays([record("purchases", 0, 10), record("behaviour", 0, 1)])
    assert not replayed.replays([record("purchases", 1, 0)])  # a partition with nothing then


def test_a_purchase_on_the_ledger_emits_no_decision_or_alert(replayed):
    outputs = [
        _out("decisions", "old-1"),
        _out("alerts", "old-1"),
        _out("decisions", "new-1"),
        _out("dead-letters", "old-2"),  # not a decision: always emitted
    ]
    kept = replayed.filter(outputs)
    assert [(o.topic, orjson.loads(o.value)["event_id"]) for o in kept] == [
        ("decisions", "new-1"),
        ("dead-letters", "old-2"),
    ]
    assert replayed.saved() == 1
    assert replayed.pending == {"old-2"} and replayed.kept == 1


def test_a_failed_batch_is_filtered_again_when_it_runs_again(replayed):
    replayed.filter([_out("decisions", "old-1")])
    replayed.reset()  # the save failed: the batch runs again
    assert replayed.filter([_out("decisions", "old-1")]) == []
    assert replayed.saved() == 1
    replayed.filter([_out("decisions", "old-2")])
    replayed.saved()
    assert not replayed  # nothing left to keep: the worker stops looking
