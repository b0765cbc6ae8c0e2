"""One micro-batch through the hot path: decode → features → one scorer call → outputs.

This module computes; :mod:`shopsentry.detection.worker` does the I/O that must happen in
a fixed order (produce + flush → save state with applied offsets → commit offsets). The
split keeps the exactly-once-effect argument in one place (the worker) and lets the
computation be tested with fakes.

Ordering: records of one partition arrive in offset order and a user's events share a
partition, so each user's events are applied in offset order. Across partitions (and
across the two topics) the batch is merged by ``occurred_at``, each partition's own
order kept: a purchase sees exactly the behaviour of this batch that happened before it,
as the offline (training) features do — which matters most when a backlog is replayed,
where one topic's partitions may be read ahead of the other's.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.detection.challenger import ChallengerConfig, score_challenger
from shopsentry.detection.dedupe import RecentEventIds
from shopsentry.detection.model_reload import ScoringModel
from shopsentry.detection.routing import (
    OutRecord,
    RoutingConfig,
    dead_letter,
    route_decisions,
)
from shopsentry.errors import InvalidEvent
from shopsentry.events.admission import Admission, misrouted
from shopsentry.events.codec import decode
from shopsentry.events.schema import Purchase
from shopsentry.features.state_store import (
    BEHAVIOR_NS,
    NAMESPACES,
    NOTHING_APPLIED,
    PURCHASE_NS,
    SEEN_NS,
    StateStore,
)
from shopsentry.rules.engine import CompiledRuleSet, PurchaseColumns, Verdicts
from shopsentry.stream.dead_letters import DeadLetterLog

logger = logging.getLogger(__name__)


class FeatureOps(Protocol):
    """The feature code the detector drives (implemented over :mod:`shopsentry.features`)."""

    names: tuple[str, ...]

    def purchase_state(self, raw: bytes | None) -> Any: ...

    def behavior_state(self, raw: bytes | None) -> Any: ...

    def purchase_step(
        self, purchase: Purchase, pstate: Any, bstate: Any
    ) -> tuple[Sequence[float], Any]:
        """The features of ``purchase`` from the states *before* it, and the purchase
        state after it (may be the same, mutated, object): the one feature step."""
        ...

    def observe_behavior(self, bstate: Any, event: Any) -> Any: ...

    def begin_batch(self, purchases: Sequence[Purchase]) -> None:
        """Before the batch's first event: read what the batch's purchases share with
        other workers (entity state)."""
        ...

    def end_batch(self) -> None:
        """After its last event, before any output is produced: make the shared updates
        durable (atomic, idempotent)."""
        ...

    def dump(self, state: Any) -> bytes: ...


@dataclass(frozen=True, slots=True)
class HotPathConfig:
    purchase_topic: str
    behavior_topic: str
    max_event_bytes: int
    routing: RoutingConfig
    challenger: ChallengerConfig = field(default_factory=ChallengerConfig)


@dataclass(slots=True)
class BatchOutcome:
    """Everything a batch produced; the worker makes it durable in order."""

    outputs: list[OutRecord] = field(default_factory=list)
    state_changes: dict[str, dict[str, bytes]] = field(default_factory=dict)
    applied: dict[TopicPartition, int] = field(default_factory=dict)  # highest offset applied
    commit: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read
    timestamps_ms: list[int] = field(
        default_factory=list
    )  # log timestamps of the decided purchases
    events_by_topic: dict[str, int] = field(default_factory=dict)
    skipped_by_topic: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)  # re-posted event ids dropped
    bands: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    stages_s: dict[str, float] = field(default_factory=dict)
    prediction_s: float | None = None
    model_version: str | None = None
    rule_set_version: int | None = None
    rule_hits: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, mode) → rows
    rule_errors: dict[str, int] = field(default_factory=dict)
    purchases: int = 0
    # The challenger beside the champion (docs/model-ops.md): its version when it scored
    # this batch, the purchases it decided (split), and (champion band, its band) counts.
    challenger_version: str | None = None
    challenger_served: int = 0
    challenger_bands: dict[tuple[str, str], int] = field(default_factory=dict)
    # The state objects behind ``state_changes``: the worker caches them once saved.
    state_objects: dict[str, dict[str, Any]] = field(default_factory=dict)


class StateCache:
    """The user states this worker wrote, kept between batches (bounded, oldest out).

    Why it is safe: a state is written only by the owner of its partition, and the worker
    clears the cache on every rebalance and on any failed batch, so an entry is always
    what the store holds. States this worker only reads (behaviour owned by another
    worker) are never cached. It saves the store round trip and the decoding of hot users.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._states: dict[str, dict[str, Any]] = {ns: {} for ns in NAMESPACES}

    def take(self, namespace: str, users: Iterable[str]) -> dict[str, Any]:
        """The cached states of ``users`` (removed: the batch owns them until :meth:`put`)."""
        states = self._states[namespace]
        found = {}
        for user in users:
            state = states.pop(user, None)
            if state is not None:
                found[user] = state
        return found

    def put(self, objects: dict[str, dict[str, Any]]) -> None:
        for namespace, states in objects.items():
            cached = self._states[namespace]
            cached.update(states)
            excess = len(cached) - self.max_entries
            if excess > 0:
                for user in list(itertools.islice(cached, excess)):
                    del cached[user]

    def clear(self) -> None:
        for states in self._states.values():
            states.clear()

    def __len__(self) -> int:
        return sum(len(s) for s in self._states.values())


class HotPath:
    """Turns a polled batch into outputs and state changes (no producing, no committing)."""

    def __init__(
        self,
        config: HotPathConfig,
        ops: FeatureOps,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        cache: StateCache | None = None,
        owns_behavior: Callable[[str], bool] | None = None,
        recent: RecentEventIds | None = None,
    ) -> None:
        self.config = config
        self.ops = ops
        self.cache = cache
        self.recent = recent  # drops re-posted event ids (None: no dedupe)
        # Whether this worker owns the user's behaviour partition (so it alone writes
        # that state, and an unchanged copy it read may stay cached too).
        self.owns_behavior = owns_behavior or (lambda _user: False)
        self._clock_ms = clock_ms
        self.dead_letter_log = DeadLetterLog(logger)
        self._admission = Admission(
            config.purchase_topic, config.behavior_topic, config.max_event_bytes
        )
        self._feature_index = {name: i for i, name in enumerate(ops.names)}

    def process(
        self,
        records: Sequence[Record],
        applied: dict[TopicPartition, int],
        scorer: ScoringModel,
        store: StateStore,
        rules: CompiledRuleSet | None = None,
        challenger: ScoringModel | None = None,
    ) -> BatchOutcome:
        """One batch; with ``challenger``, the matrix is scored a second time by it (in
        shadow or for its split of the users, per ``config.challenger``)."""
        cfg = self.config
        out = BatchOutcome(model_version=scorer.version)
        started_ms = self._clock_ms()
        t0 = time.perf_counter()
        by_partition = self._parse(records, applied, out)
        seen = self.recent.drop_duplicates(by_partition, store, self.cache) if self.recent else None
        t1 = time.perf_counter()
        out.stages_s["parse"] = t1 - t0

        p_changed, b_changed, rows, decided = self._features(out, by_partition, store)
        t2 = time.perf_counter()
        out.stages_s["features"] = t2 - t1
        out.state_changes = {PURCHASE_NS: p_changed, BEHAVIOR_NS: b_changed}
        if seen is not None:
            out.duplicates = seen.duplicates
            out.state_changes[SEEN_NS] = seen.changed
            out.state_objects[SEEN_NS] = seen.states
        if not decided:
            out.stages_s["score"] = 0.0
            return out

        X = np.asarray(rows, dtype=np.float32)
        probs = np.clip(np.asarray(scorer.predict(X), dtype=np.float64).reshape(-1), 0.0, 1.0)
        out.prediction_s = time.perf_counter() - t2
        scores = score_challenger(cfg.challenger, challenger, X, decided)
        acting = probs
        if scores is not None:
            out.challenger_version = scores.version
            acting = scores.acting(probs)
        t3 = time.perf_counter()
        latency = {
            "parse": round((t1 - t0) * 1000, 3),
            "features": round((t2 - t1) * 1000, 3),
            "score": round((t3 - t2) * 1000, 3),
        }
        verdicts = self._rules(out, rules, decided, X, acting, started_ms, latency)
        route_decisions(
            out, decided, X, probs, scorer, cfg.routing, latency, started_ms,
            verdicts, out.rule_set_version, scores,
        )  # fmt: skip
        out.purchases = len(decided)
        out.timestamps_ms.extend(r.timestamp_ms for r, _ in decided)
        out.stages_s["score"] = time.perf_counter() - t2
        return out

    def _parse(
        self,
        records: Sequence[Record],
        applied: dict[TopicPartition, int],
        out: BatchOutcome,
    ) -> dict[TopicPartition, list[tuple[Record, Any]]]:
        """Decode the records not yet applied, by partition (offset order kept); the
        undecodable and the misrouted are dead-lettered. Counts and offsets go to ``out``."""
        max_bytes = self.config.max_event_bytes
        by_partition: dict[TopicPartition, list[tuple[Record, Any]]] = {}
        commit = out.commit
        events = out.events_by_topic
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            commit[tp] = record.offset + 1
            if record.offset <= applied.get(tp, NOTHING_APPLIED):
                out.skipped_by_topic[record.topic] = out.skipped_by_topic.get(record.topic, 0) + 1
                continue
            out.applied[tp] = record.offset
            events[record.topic] = events.get(record.topic, 0) + 1
            try:
                event = decode(record.value, max_bytes=max_bytes)
            except InvalidEvent as exc:
                self._dead_letter(out, record, exc.one_line(), "decode")
                continue
            problem = self._misrouted(record, event)
            if problem is not None:
                self._dead_letter(out, record, problem, "route")
            else:
                bucket = by_partition.get(tp)
                if bucket is None:
                    bucket = by_partition[tp] = []
                bucket.append((record, event))
        return by_partition

    def _rules(
        self,
        out: BatchOutcome,
        rules: CompiledRuleSet | None,
        decided: list[tuple[Record, Purchase]],
        X: np.ndarray,
        acting: np.ndarray,
        started_ms: int,
        latency: dict[str, float],
    ) -> Verdicts | None:
        """The rule set's verdicts on the batch (None: no rule set, or an empty one)."""
        if rules is None:
            return None
        out.rule_set_version = rules.version
        if not (rules.rules or rules.lists):
            return None
        t = time.perf_counter()
        cols = PurchaseColumns([p for _, p in decided], X, self._feature_index, acting, rules.lists)
        verdicts = rules.evaluate(cols, started_ms / 1000)
        out.rule_hits, out.rule_errors = verdicts.hits, verdicts.errors
        latency["rules"] = round((time.perf_counter() - t) * 1000, 3)
        return verdicts

    def _misrouted(self, record: Record, event: Any) -> str | None:
        """Why a valid event cannot be processed where it is (None: it can)."""
        return misrouted(record, event, self._admission)

    def _dead_letter(self, out: BatchOutcome, record: Record, reason: str, stage: str) -> None:
        self.dead_letter_log.note(record.topic, record.partition, record.offset, stage, reason)
        out.outputs.append(dead_letter(self.config.routing, record, reason, stage))
        out.dead_letters[stage] = out.dead_letters.get(stage, 0) + 1

    def _features(
        self,
        out: BatchOutcome,
        by_partition: dict[TopicPartition, list[tuple[Record, Any]]],
        store: StateStore,
    ) -> tuple[
        dict[str, bytes], dict[str, bytes], list[Sequence[float]], list[tuple[Record, Purchase]]
    ]:
        ops = self.ops
        cache = self.cache
        streams = list(by_partition.values())
        if len(streams) == 1:
            merged: Iterable[tuple[Record, Any]] = streams[0]
        else:
            merged = heapq.merge(*streams, key=_occurred_at)
        p_users = {ev.user_id for stream in streams for _, ev in stream if isinstance(ev, Purchase)}
        b_users = {ev.user_id for stream in streams for _, ev in stream}
        b_states: dict[str, Any] = {}
        p_states: dict[str, Any] = {}
        if cache is not None:
            b_states = cache.take(BEHAVIOR_NS, b_users)
            p_states = cache.take(PURCHASE_NS, p_users)
        b_missing = sorted(b_users.difference(b_states))
        p_missing = sorted(p_users.difference(p_states))
        b_raw = store.load(BEHAVIOR_NS, b_missing) if b_missing else {}
        p_raw = store.load(PURCHASE_NS, p_missing) if p_missing else {}
        ops.begin_batch([ev for stream in streams for _, ev in stream if isinstance(ev, Purchase)])
        b_touched: set[str] = set()
        p_touched: set[str] = set()
        rows: list[Sequence[float]] = []
        decided: list[tuple[Record, Purchase]] = []
        for record, event in merged:
            user = event.user_id
            bstate = b_states.get(user)
            if bstate is None:
                bstate = b_states[user] = ops.behavior_state(b_raw.get(user))
            try:
                if isinstance(event, Purchase):
                    pstate = p_states.get(user)
                    if pstate is None:
                        pstate = p_states[user] = ops.purchase_state(p_raw.get(user))
                    row, p_states[user] = ops.purchase_step(event, pstate, bstate)
                    p_touched.add(user)
                    rows.append(row)
                    decided.append((record, event))
                else:
                    b_states[user] = ops.observe_behavior(bstate, event)
                    b_touched.add(user)
            except Exception as exc:  # a feature bug on one event must not stop the stream
                self._dead_letter(
                    out, record, f"(features): {type(exc).__name__}: {exc}", "features"
                )
                # The state may be half-updated: drop it, the stored copy is the truth.
                p_states.pop(user, None)
                p_touched.discard(user)
                p_raw.pop(user, None)
                if isinstance(event, Purchase):
                    p_raw.update(store.load(PURCHASE_NS, [user]))
        ops.end_batch()
        owns = self.owns_behavior
        out.state_objects = {
            PURCHASE_NS: {user: p_states[user] for user in p_touched},
            BEHAVIOR_NS: {
                user: state for user, state in b_states.items() if user in b_touched or owns(user)
            },
        }
        p_changed = {user: ops.dump(p_states[user]) for user in p_touched}
        b_changed = {user: ops.dump(b_states[user]) for user in b_touched}
        return p_changed, b_changed, rows, decided


def _occurred_at(item: tuple[Record, Any]) -> Any:
    return item[1].occurred_at
