"""The embedded event log: Kafka's model (topics, partitions, keys, consumer groups,
committed offsets, retention) in one SQLite database, for one machine and many processes."""

from __future__ import annotations

from shopsentry.bus.local.consumer import LocalConsumer
from shopsentry.bus.local.log import LocalLog
from shopsentry.bus.local.producer import LocalProducer
from shopsentry.bus.local.sqlite import LogBusy, LogStoreError

__all__ = ["LocalConsumer", "LocalLog", "LocalProducer", "LogBusy", "LogStoreError"]
