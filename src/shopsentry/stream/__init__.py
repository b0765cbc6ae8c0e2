"""One runtime for every consumer of the event log (see ``docs/stream.md``).

Interfaces: :class:`Handler` (a batch → outputs + state changes), :class:`Sink` (state
with the positions it reflects, written atomically and fenced, plus the outbox) and
:class:`Observer` (metrics, benchmark sampling). :class:`StreamRuntime` runs them.
"""

from shopsentry.stream.base import (
    BatchReport,
    BatchResult,
    Checkpoint,
    Handler,
    HandlerBase,
    Observer,
    ObserverBase,
    Output,
    Sink,
)
from shopsentry.stream.checkpoint import Backoff, Committer
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime

__all__ = [
    "Backoff",
    "BatchReport",
    "BatchResult",
    "Checkpoint",
    "Committer",
    "Handler",
    "HandlerBase",
    "Observer",
    "ObserverBase",
    "Output",
    "RuntimeConfig",
    "Sink",
    "StreamRuntime",
]
