"""The online entity store: entity states shared by every detector worker.

Entity keys (a card, a device, a terminal...) do not follow the user partitioning, so two
workers may update one entity at the same moment. Every change is therefore a *delta*
applied atomically to the stored state — "this purchase went through these entities",
"this purchase was fraud, known from then" — never an overwrite of a copy a worker read
earlier:

- a purchase is applied at most once: its ``event_id`` is recorded (with its time and
  entity keys, which a later label needs) in the same atomic step as the entity updates,
  and a purchase already recorded is skipped. A redelivery, or a worker killed between
  applying and committing its offsets, counts nothing twice;
- a label is applied to the entities of its purchase, keyed by the purchase's
  ``event_id`` in each entity's fraud list (idempotent too). A label that arrives before
  its purchase was applied waits (``pending``) and is applied with the purchase;
- the label consumer's positions (the next offset to read of ``fraud-labels`` and
  ``alert-reviews``) are written in the same atomic step as the labels they applied, and
  fenced like every sink of the stream runtime (:class:`EntityLabelSink`).

Backends (same ``settings.state.backend`` switch as the per-user state):
:class:`LmdbEntityStore` (an LMDB environment of its own under the state directory: one
writer at a time across processes, so a write transaction is the atomic step) and
:class:`~shopsentry.features.entity_redis.RedisEntityStore` (optimistic ``WATCH`` /
``MULTI`` transactions, retried on conflict).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import TransientError
from shopsentry.features.entity import EntityState, observe_entity_label, observe_entity_purchase
from shopsentry.stream.base import check_fence

if TYPE_CHECKING:
    from shopsentry.features.offline import KnownLabel
    from shopsentry.features.state_store import StateConfig
    from shopsentry.stream.base import Checkpoint, Output

Positions = Mapping[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class LabelPositions:
    """Where the label consumer's batch ends (``reached``: written with its labels) and
    where it started (``started``: the fence, refused if the store is beyond it)."""

    reached: Positions
    started: Positions


class EntityStoreUnavailable(TransientError):
    """The entity store could not be read or written (Redis down, LMDB locked or full)."""


@dataclass(frozen=True, slots=True)
class EntityPurchase:
    """One purchase's delta: it went through ``keys`` (entity keys, None skipped)."""

    event_id: str
    user_id: str
    amount: float
    ts: float
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch's entity states as a worker read them (``read``: the stored bytes, None
    for a key never seen) and after it applied the batch's purchases to them in memory
    (``states``); ``dirty``: keys whose in-memory state is not exactly that (a feature
    step failed half-way). In the write step, a key whose stored bytes are still
    ``read`` takes its state from ``states`` instead of decoding and re-applying.

    ``written`` is filled by the store once the write is durable: each entity state it
    wrote, with the bytes it wrote (a worker keeps them, and skips decoding the state in
    a later batch if the store still holds exactly those bytes). ``version``: the
    store's version ``read`` came from (:meth:`EntityStore.read_versioned`; None: none),
    so a write at the next version knows no other write came in between and need not
    compare the stored bytes."""

    read: Mapping[str, bytes | None]
    states: Mapping[str, EntityState]
    dirty: frozenset[str] = frozenset()
    version: int | None = None
    written: dict[str, tuple[EntityState, bytes]] = field(default_factory=dict)

    def wrote(self, states: Mapping[str, EntityState], writes: Mapping[str, bytes]) -> None:
        """Record what a durable write wrote (``states`` and the writes holding them)."""
        self.written.update({key: (state, writes["e:" + key]) for key, state in states.items()})


class EntityStore(Protocol):
    """Entity states by key, updated by atomic, idempotent deltas."""

    def load(self, keys: Sequence[str]) -> dict[str, EntityState]:
        """The stored state of each key (an empty state for a key never seen)."""
        ...

    def read(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """The stored bytes of each key's state (None: never seen)."""
        ...

    def read_versioned(self, keys: Sequence[str]) -> tuple[dict[str, bytes | None], int | None]:
        """:meth:`read`, and the store's version it read at (None: the backend has no
        such version; see :class:`Prepared`)."""
        ...

    def apply_purchases(
        self, purchases: Sequence[EntityPurchase], prepared: Prepared | None = None
    ) -> int:
        """Apply each purchase not applied before; returns how many were new. With
        ``prepared`` (the states after these very purchases, in this order), an entity
        no other worker changed since it was read is written as prepared."""
        ...

    def apply_labels(self, labels: Sequence[KnownLabel], at: LabelPositions | None = None) -> int:
        """Apply each label to its purchase's entities; returns how many found their
        purchase (the others wait for it). ``at.reached`` (the label consumer's next
        offsets) is written in the same atomic step; raise ``StateFenced``, writing
        nothing, if a stored position is beyond ``at.started``."""
        ...

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The label consumer's stored next offset per partition (absent: none)."""
        ...

    def close(self) -> None: ...


class EntityLabelSink:
    """The entity store as the label consumer's sink on the stream runtime: the labels
    and the positions they reach in one atomic, fenced write. The label consumer
    produces nothing, so its outbox is always empty."""

    def __init__(self, store: EntityStore) -> None:
        self.store = store

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self.store.positions(tps)

    def save(self, checkpoint: Checkpoint) -> None:
        at = LabelPositions(checkpoint.positions, checkpoint.expected)
        self.store.apply_labels(checkpoint.changes or (), at)

    def outbox(self, tps: Sequence[TopicPartition]) -> list[Output]:
        return []


# -- the deltas, on any key-value view of the store ------------------------------------

Get = Callable[[str], bytes | None]


class _Txn:
    """The deltas on one transaction's view: reads through ``get``, writes collected
    (states decoded once per transaction, however many deltas touch them)."""

    def __init__(self, get: Get) -> None:
        self.get = get
        self.states: dict[str, EntityState] = {}
        self.writes: dict[str, bytes] = {}
        self.deletes: list[str] = []

    def state(self, key: str) -> EntityState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = EntityState.from_bytes(self.get("e:" + key))
        return state

    def _claim(self, p: EntityPurchase) -> bool:
        """Record ``p``'s marker; False if it was applied before (or earlier here)."""
        marker = "p:" + p.event_id
        if marker in self.writes or self.get(marker) is not None:
            return False
        self.writes[marker] = orjson.dumps([p.ts, p.keys])
        return True

    def _unchanged(
        self, new: list[EntityPurchase], stale: set[str], prepared: Prepared, fresh: bool
    ) -> set[str]:
        """The keys of ``new`` whose prepared state is this view's state plus ``new``:
        stored bytes as read (``fresh``: nothing was written since the read), and every
        purchase the worker applied to it is new."""
        kept: set[str] = set()
        states, dirty, read, get = prepared.states, prepared.dirty, prepared.read, self.get
        for key in dict.fromkeys(k for p in new for k in p.keys):
            state = states.get(key)
            if state is None or key in stale or key in dirty:
                continue
            if fresh or get("e:" + key) == read.get(key):
                self.states[key] = state
                kept.add(key)
        return kept

    def purchases(
        self, purchases: Iterable[EntityPurchase], prepared: Prepared | None, fresh: bool = False
    ) -> int:
        new: list[EntityPurchase] = []
        stale: set[str] = set()  # entities of purchases skipped (applied before)
        for p in purchases:
            if self._claim(p):
                new.append(p)
            else:
                stale.update(p.keys)
        kept = self._unchanged(new, stale, prepared, fresh) if prepared is not None else set()
        for p in new:
            for key in p.keys:
                if key not in kept:
                    observe_entity_purchase(self.state(key), p.user_id, p.amount, p.ts)
        for p in new:  # labels touch only the fraud list: after the purchases is the same
            pending = self.get("l:" + p.event_id)
            if pending is not None:
                is_fraud, known_at = orjson.loads(pending)
                for key in p.keys:
                    observe_entity_label(self.state(key), p.event_id, is_fraud, p.ts, known_at)
                self.deletes.append("l:" + p.event_id)
        return len(new)

    def label(self, event_id: str, is_fraud: bool, known_at: float) -> bool:
        marker = "p:" + event_id
        raw = self.writes.get(marker) or self.get(marker)
        if raw is None:
            self.writes["l:" + event_id] = orjson.dumps([is_fraud, known_at])
            return False
        ts, keys = orjson.loads(raw)
        for key in keys:
            observe_entity_label(self.state(key), event_id, is_fraud, ts, known_at)
        return True

    def finish(self) -> dict[str, bytes]:
        for key, state in self.states.items():
            self.writes["e:" + key] = state.to_bytes()
        return self.writes


def position_key(tp: TopicPartition) -> str:
    """The store key of the label consumer's position in ``tp``."""
    return f"q:{tp.topic}:{tp.partition}"


def read_positions(get: Get, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for tp in tps:
        raw = get(position_key(tp))
        if raw is not None:
            out[tp] = int(raw)
    return out


def apply_all(
    get: Get,
    purchases: Iterable[EntityPurchase],
    labels: Iterable[KnownLabel],
    at: LabelPositions | None = None,
    prepared: Prepared | None = None,
    fresh: bool = False,
) -> tuple[dict[str, bytes], list[str], int, dict[str, EntityState]]:
    """The writes and deletes that apply ``purchases`` and ``labels`` (and store the
    label consumer's positions ``at``) to the view ``get``, how many of them took
    effect, and the entity states written (by key). Fenced: ``StateFenced`` if a stored
    position is beyond ``at.started``. ``prepared`` is used once: its states are written
    as they are (the labels of this step may change them), so a retried step passes
    None; ``fresh``: the view is the one ``prepared.read`` came from (nothing written
    since)."""
    if at is not None and at.started:
        check_fence(read_positions(get, at.started), at.started, "the entity store")
    txn = _Txn(get)
    done = txn.purchases(purchases, prepared, fresh)
    done += sum(txn.label(lb.event_id, lb.is_fraud, lb.known_at) for lb in labels)
    writes = txn.finish()
    for tp, position in (at.reached if at is not None else {}).items():
        writes[position_key(tp)] = str(position).encode()
    return writes, txn.deletes, done, txn.states


# -- LMDB ------------------------------------------------------------------------------

_LMDB_LOCK = threading.Lock()
_LMDB_OPEN: dict[Path, list[Any]] = {}  # one environment per path per process


class LmdbEntityStore:
    """:class:`EntityStore` on an LMDB environment of its own (``entities.lmdb``)."""

    def __init__(self, path: Path) -> None:
        import lmdb

        self._lmdb = lmdb
        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        with _LMDB_LOCK:
            entry = _LMDB_OPEN.get(self.path)
            if entry is None:
                try:
                    env = lmdb.open(str(self.path), map_size=1 << 31, sync=False, metasync=False)
                except lmdb.Error as exc:
                    raise EntityStoreUnavailable(
                        f"cannot open the entity store {self.path}: {exc}",
                        hint="check the data dir is a writable local disk",
                    ) from exc
                entry = _LMDB_OPEN[self.path] = [env, 0]
            entry[1] += 1
            self._env = entry[0]

    def load(self, keys: Sequence[str]) -> dict[str, EntityState]:
        return {k: EntityState.from_bytes(v) for k, v in self.read(keys).items()}

    def read(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        return self.read_versioned(keys)[0]

    def read_versioned(self, keys: Sequence[str]) -> tuple[dict[str, bytes | None], int | None]:
        """The version is the snapshot's transaction id: a write transaction with the
        next id is the first commit after it."""
        with self._env.begin() as txn:
            get = txn.get
            return {k: get(("e:" + k).encode()) for k in keys}, txn.id()

    def _get(self, txn: Any) -> Get:
        def get(key: str) -> bytes | None:
            value = txn.get(key.encode())
            return None if value is None else bytes(value)

        return get

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        with self._env.begin() as txn:
            return read_positions(self._get(txn), tps)

    def _write(
        self,
        purchases: Sequence[EntityPurchase],
        labels: Sequence[KnownLabel],
        at: LabelPositions | None = None,
        prepared: Prepared | None = None,
    ) -> int:
        try:
            with self._env.begin(write=True) as txn:
                fresh = prepared is not None and prepared.version == txn.id() - 1
                writes, deletes, done, states = apply_all(
                    self._get(txn), purchases, labels, at, prepared, fresh
                )
                for key, value in writes.items():
                    txn.put(key.encode(), value)
                for key in deletes:
                    txn.delete(key.encode())
            if prepared is not None:
                prepared.wrote(states, writes)
            return done
        except self._lmdb.MapFullError:
            self._env.set_mapsize(self._env.info()["map_size"] * 2)
            return self._write(purchases, labels, at)
        except self._lmdb.Error as exc:
            raise EntityStoreUnavailable(
                f"entity store write failed: {exc}", hint="check the data dir's disk"
            ) from exc

    def apply_purchases(
        self, purchases: Sequence[EntityPurchase], prepared: Prepared | None = None
    ) -> int:
        return self._write(purchases, (), None, prepared) if purchases else 0

    def apply_labels(self, labels: Sequence[KnownLabel], at: LabelPositions | None = None) -> int:
        return self._write((), labels, at) if labels or at is not None else 0

    def close(self) -> None:
        with _LMDB_LOCK:
            entry = _LMDB_OPEN.get(self.path)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del _LMDB_OPEN[self.path]
                    entry[0].close()


def open_entity_store(config: StateConfig, *, prefix: str | None = None) -> EntityStore:
    """The entity store on ``config.backend``, keyed under ``prefix`` (default: the
    detector's consumer group)."""
    key_prefix = prefix if prefix is not None else config.group_id
    if config.backend == "redis":
        from shopsentry.features.entity_redis import RedisEntityStore

        return RedisEntityStore(config.redis_url.get_secret_value(), prefix=key_prefix)
    return LmdbEntityStore(config.state_dir / f"{key_prefix}.entities.lmdb")
