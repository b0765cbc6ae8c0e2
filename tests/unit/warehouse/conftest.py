"""Fixtures for loader tests: an in-memory log standing in for ``open_log``."""

from __future__ import annotations

import pytest

from tests.unit.warehouse.factories import EventSet, make_events
from tests.unit.warehouse.memlog import MemLog


@pytest.fixture
def memlog(monkeypatch, settings) -> MemLog:
    from shopsentry import bus

    log = MemLog()
    log.create_topics(bus.topic_specs(settings))
    monkeypatch.setattr(bus, "open_log", lambda _settings, **_kw: log)
    return log


@pytest.fixture
def events() -> EventSet:
    return make_events()


def publish(log: MemLog, events: EventSet) -> None:
    for topic, records in events.by_topic.items():
        for key, value in records:
            log.append(topic, value, key)
