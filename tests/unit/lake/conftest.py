"""The loader's in-memory log and event sets, reused: the lake starts from a loaded RAW."""

from __future__ import annotations

import pytest

from tests.unit.warehouse.conftest import events, memlog, publish  # noqa: F401


@pytest.fixture
def loaded(settings, memlog, events):  # noqa: F811
    """A warehouse whose RAW holds the event set (two days of events)."""
    from shopsentry.warehouse.loader import LoaderConfig, load_from_log

    publish(memlog, events)
    load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=1.0)
    return settings
