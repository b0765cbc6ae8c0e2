"""Fixtures for loader tests: the shared in-memory log standing in for ``open_log``."""

from __future__ import annotations

import pytest

from tests.fakes.log import MemoryLog
from tests.unit.warehouse.factories import EventSet, make_events


@pytest.fixture
def memlog(monkeypatch, settings) -> MemoryLog:
    from shopsentry import bus

    log = MemoryLog()
    log.create_topics(bus.topic_specs(settings.topics))
    monkeypatch.setattr(bus, "open_log", lambda _settings, **_kw: log)
    return log


@pytest.fixture
def events() -> EventSet:
    return make_events()


def publish(log: MemoryLog, events: EventSet) -> None:
    for topic, records in events.by_topic.items():
        for key, value in records:
            log.append(topic, value, key)
