"""The online feature-state store: per-user state plus the per-partition applied offsets.

The detector keeps two kinds of per-user state, in two namespaces: ``purchase`` (updated
only from purchase events) and ``behavior`` (updated only from behaviour events). The two
topics have different partition counts, so a user's purchases and behaviour may be owned
by different workers; each worker writes only its own namespace and reads the other. A
third, ``seen``, holds each user's recent event ids per topic (``detection/dedupe.py``).

Idempotence lives here too. Each write stores, in the same atomic transaction as the
states, the highest offset applied per input partition. After a crash or a rebalance a
worker skips any redelivered record at or below that offset, so a feature never counts
an event twice — however far the consumer's committed offset lags behind.

The applied offsets also fence out a former owner. A worker that lost its partitions
without noticing (stalled past the session timeout) may finish a batch after the new
owner has started. Its save names the applied offsets it started from (``expected``);
if the store has moved past them, somebody else owns the partition now, and the save is
refused with :class:`~shopsentry.errors.StateFenced`, writing nothing.

The outbox rides on the same write: a save may carry the batch's outputs as one blob
under a batch id, and each applied partition then points at that batch; ``outbox``
returns the blobs the given partitions point at, so a new owner can re-produce what a
crashed one saved but may not have produced (:mod:`shopsentry.stream.checkpoint`). A
blob no partition points at any more is deleted by the save that replaced it.

Backends: :mod:`shopsentry.features.lmdb_store` (LMDB, in the data dir's state directory)
and :mod:`shopsentry.features.redis_store` (Redis). :func:`open_store` picks by
:attr:`StateConfig.backend` (``state.backend`` in the settings).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import SecretStr

from shopsentry.bus.base import TopicPartition

if TYPE_CHECKING:
    from shopsentry.config import Settings
    from shopsentry.stream.base import Checkpoint, Output

PURCHASE_NS = "purchase"
BEHAVIOR_NS = "behavior"
# Each user's most recent event ids per topic (detection/dedupe.py): a re-posted event
# is counted once. Keys ``p:<user>`` and ``b:<user>``, each written by its topic's owner.
SEEN_NS = "seen"
NAMESPACES: tuple[str, ...] = (PURCHASE_NS, BEHAVIOR_NS, SEEN_NS)

# The applied offset of a partition nothing was ever applied from.
NOTHING_APPLIED = -1


@runtime_checkable
class StateStore(Protocol):
    """Per-user state bytes by namespace, and applied offsets, written atomically together."""

    def load(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored state of each key that has one (absent keys are left out)."""
        ...

    def applied_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The highest offset applied per partition (``NOTHING_APPLIED`` when none)."""
        ...

    def save(
        self,
        changes: Mapping[str, Mapping[str, bytes]],
        applied: Mapping[TopicPartition, int],
        *,
        expected: Mapping[TopicPartition, int] | None = None,
        outbox: tuple[str, bytes] | None = None,
    ) -> None:
        """Write ``changes`` (namespace → key → state) and ``applied`` offsets in one
        atomic step: after a crash either all of it is visible or none of it.

        With ``expected`` (partition → the applied offset the writer started from), raise
        StateFenced and write nothing if any stored applied offset is beyond it.
        ``outbox`` (batch id, blob): the batch's outputs, which every partition in
        ``applied`` then points at; None: those partitions have no pending outputs."""
        ...

    def outbox(self, tps: Sequence[TopicPartition]) -> list[bytes]:
        """The outbox blobs ``tps`` point at, each once, in batch-id order."""
        ...

    def items(self, namespace: str) -> Iterator[tuple[str, bytes]]:
        """Every (key, state) of a namespace: for audits, tests and rebuilds, not the hot path."""
        ...

    def clear(self) -> None:
        """Forget every state and applied offset (a full replay from the log follows)."""
        ...

    def close(self) -> None: ...


class StateStoreSink:
    """A :class:`StateStore` as the stream runtime's sink: positions are the applied
    offsets plus one, and the outbox is stored as one blob per batch."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        applied = self.store.applied_offsets(tps)
        return {tp: off + 1 for tp, off in applied.items() if off != NOTHING_APPLIED}

    def save(self, checkpoint: Checkpoint) -> None:
        from shopsentry.stream.outbox import encode_outbox

        outbox = None
        if checkpoint.outbox:
            outbox = (checkpoint.outbox_id, encode_outbox(checkpoint.outbox))
        self.store.save(
            checkpoint.changes or {},
            {tp: pos - 1 for tp, pos in checkpoint.positions.items()},
            expected={tp: pos - 1 for tp, pos in checkpoint.expected.items()},
            outbox=outbox,
        )

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        from shopsentry.stream.outbox import decode_outbox

        return [out for blob in self.store.outbox(tps) for out in decode_outbox(blob)]


def check_namespace(namespace: str) -> None:
    """Refuse a namespace outside :data:`NAMESPACES` (a typo would silently split state)."""
    if namespace not in NAMESPACES:
        from shopsentry.errors import ConfigError

        raise ConfigError(f"unknown state namespace {namespace!r}", hint=f"use one of {NAMESPACES}")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where the detector's state lives, for both stores (per-user and entity): the
    backend, the LMDB directory or the Redis URL (kept secret: it may hold a password,
    and a config's repr gets logged), and the default key prefix — the detector's
    consumer group, so two groups never share applied offsets."""

    backend: Literal["lmdb", "redis"]
    state_dir: Path
    redis_url: SecretStr
    group_id: str

    @classmethod
    def from_settings(cls, settings: Settings) -> StateConfig:
        return cls(
            backend=settings.state.backend,
            state_dir=settings.state_dir,
            redis_url=settings.state.redis_url,
            group_id=settings.detector.group_id,
        )


def open_store(config: StateConfig, *, prefix: str | None = None) -> StateStore:
    """The store ``config.backend`` names, keyed under ``prefix`` (default: the
    detector's consumer group, so two groups never share applied offsets)."""
    key_prefix = prefix if prefix is not None else config.group_id
    if config.backend == "redis":
        from shopsentry.features.redis_store import RedisStateStore

        return RedisStateStore(config.redis_url.get_secret_value(), prefix=key_prefix)
    from shopsentry.features.lmdb_store import LmdbStateStore

    return LmdbStateStore(config.state_dir / f"{key_prefix}.lmdb")
