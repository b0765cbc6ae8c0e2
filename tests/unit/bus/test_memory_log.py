"""The shared in-memory log (tests/fakes/log.py) passes the bus contract tests that need
no second process: the fake behaves like the real backends wherever unit tests rely on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopsentry.bus.base import EventLog
from shopsentry.config import Settings
from tests.fakes.log import MemoryLog
from tests.integration.bus.test_contract import (
    Backend,
    test_committed_offsets_survive_restart,
    test_group_of_two_splits_three_partitions_two_and_one,
    test_per_key_order_and_kafka_partitioner,
    test_replay_from_offset_and_from_timestamp,
    test_retention_settings_applied,
)

__all__ = [
    "test_committed_offsets_survive_restart",
    "test_group_of_two_splits_three_partitions_two_and_one",
    "test_per_key_order_and_kafka_partitioner",
    "test_replay_from_offset_and_from_timestamp",
    "test_retention_settings_applied",
]


class MemoryBackend(Backend):
    def reopen(self) -> EventLog:
        return self.log  # one process: a second handle sees the same records and groups


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    log = MemoryLog()
    assert isinstance(log, EventLog)
    yield MemoryBackend("memory", Settings(data_dir=tmp_path / "data"), log)
