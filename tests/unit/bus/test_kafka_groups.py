"""The consumer-group probe asks a fresh helper once more when one dies mid-request (a
librdkafka abort), and reports a helper that only answers too slowly without waiting twice."""

from __future__ import annotations

from typing import Any

import pytest

from shopsentry.bus.kafka_groups import GroupProbe, _HelperDied
from shopsentry.config import KafkaSettings
from shopsentry.errors import BrokerUnavailable

ANSWER = {"committed": [["t", 0, 5]], "owners": [["t", 0, "member-1"]]}


def probe_with(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> tuple[GroupProbe, list]:
    probe = GroupProbe("127.0.0.1:9092", KafkaSettings(), deadline_s=1.0)
    asked: list[str] = []

    def ask(group: str) -> dict[str, Any]:
        asked.append(group)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return dict(outcome)

    monkeypatch.setattr(probe, "_ask", ask)
    return probe, asked


def test_a_helper_that_died_is_replaced_and_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, asked = probe_with(monkeypatch, [_HelperDied("exited with -11"), ANSWER])
    committed, owners = probe.read("g")
    assert asked == ["g", "g"]
    assert committed == {("t", 0): 5} and owners == {("t", 0): "member-1"}


def test_two_deaths_in_a_row_are_a_retryable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, asked = probe_with(monkeypatch, [_HelperDied("-11"), _HelperDied("-6")])
    with pytest.raises(BrokerUnavailable) as info:
        probe.read("g")
    assert info.value.retryable and asked == ["g", "g"]


def test_a_slow_helper_is_not_asked_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, asked = probe_with(monkeypatch, [BrokerUnavailable("no answer"), ANSWER])
    with pytest.raises(BrokerUnavailable):
        probe.read("g")
    assert asked == ["g"]
