"""Small in-memory stand-ins for the detector's collaborators (unit tests only).

``MemoryLog`` keeps records per partition and makes produced records visible only after
``flush`` (so a test can "crash" between send and flush); ``FakeOps`` counts purchases
and logins per user in JSON states; ``FakeScorer`` maps the amount to a probability.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shopsentry.bus.base import Record, TopicPartition
from shopsentry.bus.partitioner import partition_for
from shopsentry.events.schema import FeatureContribution, Login, Purchase


class MemoryLog:
    def __init__(self, partitions: Mapping[str, int]) -> None:
        self.data: dict[str, list[list[Record]]] = {
            t: [[] for _ in range(n)] for t, n in partitions.items()
        }
        self.committed: dict[tuple[str, TopicPartition], int] = {}
        self.clock_ms = 1_700_000_000_000

    def append(self, topic: str, value: bytes, key: bytes | None, headers: Any = None) -> Record:
        parts = self.data[topic]
        p = partition_for(key, len(parts)) if key is not None else 0
        record = Record(topic, p, len(parts[p]), self.clock_ms, key, value, tuple(headers or ()))
        parts[p].append(record)
        return record

    def records(self, topic: str) -> list[Record]:
        return [r for part in self.data[topic] for r in part]

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: Any = None,
        on_revoke: Any = None,
        auto_offset_reset: str = "earliest",
        client_id: str | None = None,
    ) -> MemoryConsumer:
        return MemoryConsumer(self, group_id or "", list(topics), on_assign, on_revoke)

    def group_lag(self, group: str) -> list[Any]:
        return []


class MemoryProducer:
    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.pending: list[tuple[str, bytes, bytes | None, Any]] = []
        self.flushes = 0

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        *,
        headers: Any = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        self.pending.append((topic, value, key, headers))

    def flush(self, timeout: float = 30.0) -> None:
        for topic, value, key, headers in self.pending:
            self.log.append(topic, value, key, headers)
        self.pending.clear()
        self.flushes += 1

    def close(self) -> None:
        self.flush()


class MemoryConsumer:
    def __init__(
        self, log: MemoryLog, group: str, topics: list[str], on_assign: Any, on_revoke: Any
    ) -> None:
        self.log = log
        self.group = group
        self.tps = [TopicPartition(t, p) for t in topics for p in range(len(log.data[t]))]
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.position: dict[TopicPartition, int] = {}
        self.polls = 0

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        if not self.position:
            self.position = {tp: self.log.committed.get((self.group, tp), 0) for tp in self.tps}
            if self.on_assign:
                self.on_assign(self.tps)
        self.polls += 1
        out: list[Record] = []
        for tp in self.tps:
            part = self.log.data[tp.topic][tp.partition]
            take = part[self.position[tp] : self.position[tp] + max_records - len(out)]
            out.extend(take)
            self.position[tp] += len(take)
        return out

    def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, *, asynchronous: bool = False
    ) -> None:
        for tp, offset in (offsets or self.position).items():
            self.log.committed[(self.group, tp)] = offset

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.tps)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        return {tp: self.log.committed.get((self.group, tp)) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def close(self) -> None:
        if self.on_revoke and self.position:
            self.on_revoke(self.tps)


class FakeOps:
    """Features: [amount, purchases so far, logins so far]; states are JSON counters."""

    names = ("amount", "purchases_before", "logins_before")

    def purchase_state(self, raw: bytes | None) -> dict[str, Any]:
        return json.loads(raw) if raw else {"purchases": 0, "events": []}

    def behavior_state(self, raw: bytes | None) -> dict[str, Any]:
        return json.loads(raw) if raw else {"logins": 0}

    def vector(self, purchase: Any, pstate: dict[str, Any], bstate: dict[str, Any]) -> list[float]:
        return [purchase.amount, float(pstate["purchases"]), float(bstate["logins"])]

    def observe_purchase(self, pstate: dict[str, Any], purchase: Any) -> dict[str, Any]:
        return {
            "purchases": pstate["purchases"] + 1,
            "events": [*pstate["events"], purchase.event_id],
        }

    def begin_batch(self, purchases: Any) -> None:
        pass

    def end_batch(self) -> None:
        pass

    def purchase_step(
        self, purchase: Any, pstate: dict[str, Any], bstate: dict[str, Any]
    ) -> tuple[list[float], dict[str, Any]]:
        return self.vector(purchase, pstate, bstate), self.observe_purchase(pstate, purchase)

    def observe_behavior(self, bstate: dict[str, Any], event: Any) -> dict[str, Any]:
        return {"logins": bstate["logins"] + (event.event_type == "login")}

    def dump(self, state: dict[str, Any]) -> bytes:
        return json.dumps(state).encode()


@dataclass
class FakeScorer:
    """p = amount / 1000 (clipped); explain gives the amount as the top feature."""

    version: str = "1"
    calls: int = 0
    explained_rows: int = 0

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        assert X.dtype == np.float32
        return np.clip(X[:, 0] / 1000.0, 0, 1).astype(np.float32)

    def explain(self, rows: np.ndarray, top_k: int) -> list[tuple[FeatureContribution, ...]]:
        self.explained_rows += len(rows)
        return [
            tuple(
                FeatureContribution(
                    name=n, value=float(v) if i else float("nan"), contribution=float(v) / 100
                )
                for i, (n, v) in enumerate(zip(FakeOps.names, row, strict=True))
            )[:top_k]
            for row in rows
        ]


BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def purchase(n: int, user: str = "u1", amount: float = 20.0, **extra: Any) -> Purchase:
    fields: dict[str, Any] = {
        "event_id": f"p-{user}-{n}",
        "source": "web",
        "user_id": user,
        "occurred_at": BASE + timedelta(minutes=n),
        "order_id": f"o-{user}-{n}",
        "amount": amount,
        "item_count": 1,
        "payment_method": "card",
        "country": "US",
        "billing_country": "US",
    }
    fields.update(extra)
    return Purchase(**fields)


def login(n: int, user: str = "u1") -> Login:
    return Login(
        event_id=f"l-{user}-{n}",
        source="mobile",
        user_id=user,
        occurred_at=BASE + timedelta(minutes=n),
    )
