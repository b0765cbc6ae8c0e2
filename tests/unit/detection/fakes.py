"""Small in-memory stand-ins for the detector's collaborators (unit tests only).

``MemoryLog`` is the shared in-memory log (:mod:`tests.fakes.log`); ``FakeOps`` counts
purchases and logins per user in JSON states; ``FakeScorer`` maps the amount to a
probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shopsentry.events.schema import FeatureContribution, Login, Purchase
from tests.fakes.log import MemoryLog

__all__ = ["BASE", "FakeOps", "FakeScorer", "MemoryLog", "login", "purchase"]


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
