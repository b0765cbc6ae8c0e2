"""Builders of the records the detector publishes, and waits on the log, shared by the
API unit tests and the browser test."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shopsentry.config import Settings
from shopsentry.events.codec import encode
from shopsentry.events.schema import (
    Decision,
    FeatureContribution,
    FraudAlert,
    Purchase,
    severity_for,
)

# Recent, on a minute boundary: the dashboard draws the last minutes of live data.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)


def purchase_json(
    event_id: str = "ev-1", *, user_id: str = "user-1", source: str = "web", **extra: Any
) -> dict:
    body = {
        "event_type": "purchase",
        "event_id": event_id,
        "source": source,
        "user_id": user_id,
        "occurred_at": T0.isoformat(),
        "order_id": f"order-{event_id}",
        "amount": 42.5,
        "currency": "USD",
        "item_count": 2,
        "payment_method": "card",
        "country": "US",
        "billing_country": "US",
    }
    body.update(extra)
    return body


@dataclass
class Scored:
    purchase: Purchase
    decision: Decision
    alert: FraudAlert | None


def scored(
    i: int,
    *,
    user_id: str = "user-1",
    probability: float = 0.9,
    at: datetime = T0,
    threshold: float = 0.7,
) -> Scored:
    """A purchase, its decision and (over the threshold) its alert, as the detector emits them."""
    event_id = f"ev-{i:04d}"
    occurred = at + timedelta(seconds=i)
    purchase = Purchase.model_validate(
        purchase_json(event_id, user_id=user_id, occurred_at=occurred.isoformat(), amount=10.0 + i)
    )
    band = "decline" if probability >= 0.95 else "review" if probability >= threshold else "approve"
    features = (  # as the detector reports them: raw model inputs
        FeatureContribution(name="amount", value=purchase.amount, contribution=0.41),
        FeatureContribution(name="amount_ratio", value=12.0, contribution=0.3),
        FeatureContribution(name="account_age_days", value=3 / 1440, contribution=0.22),
        FeatureContribution(name="new_card", value=0.0, contribution=-0.05),
    )
    common = {
        "event_id": event_id,
        "source": "web",
        "user_id": user_id,
        "occurred_at": occurred,
        "order_id": purchase.order_id,
        "amount": purchase.amount,
        "currency": "USD",
        "probability": probability,
        "band": band,
        "model_version": "7",
        "top_features": features,
        "decided_at": occurred + timedelta(milliseconds=40 + i),
    }
    decision = Decision(
        **common, threshold=threshold, latency_ms={"end_to_end": 40.0 + i, "score": 2.0}
    )
    alert = None
    if probability >= threshold:
        alert = FraudAlert(
            **common, alert_id=f"alert-{event_id}", severity=severity_for(probability, threshold)
        )
    return Scored(purchase, decision, alert)


def publish(log: Any, settings: Settings, items: list[Scored]) -> None:
    """Write purchases, decisions and alerts into the log the way the detector does."""
    topics = settings.topics
    producer = log.producer()
    for s in items:
        key = s.purchase.user_id.encode()
        producer.send(topics.purchase_events.name, encode(s.purchase), key=key)
        producer.send(topics.decisions.name, encode(s.decision), key=key)
        if s.alert is not None:
            producer.send(topics.fraud_alerts.name, encode(s.alert), key=key)
    producer.flush()
    producer.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until the background consumer has caught up (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def caught_up(log: Any, group: str) -> bool:
    """True once ``group`` has committed up to the end of every non-empty partition."""
    lags = log.group_lag(group)
    return bool(lags) and all(p.committed is not None and p.lag == 0 for p in lags if p.end_offset)


def read_topic(log: Any, topic: str) -> list[Any]:
    """Every record now in ``topic`` (reads up to the end offsets seen at the start)."""
    expected = sum(p.end_offset - p.start_offset for p in log.describe_topic(topic).partitions)
    records: list[Any] = []
    if expected == 0:
        return records
    consumer = log.consumer(None, [topic])
    try:
        wait_for(
            lambda: (
                bool(records.extend(consumer.poll(max_records=1000, timeout=0.2)))
                or len(records) >= expected
            ),
            f"{expected} records on {topic}",
        )
    finally:
        consumer.close()
    return records


@dataclass
class Keys:
    web: str
    pos: str
    analyst: str
    admin: str

    @staticmethod
    def header(token: str) -> dict[str, str]:
        return {"X-API-Key": token}


def make_keys(settings: Settings) -> Keys:
    from shopsentry.api.app import open_keys

    store = open_keys(settings)
    try:
        return Keys(
            web=store.create("ingest", "web").token,
            pos=store.create("ingest", "pos").token,
            analyst=store.create("analyst").token,
            admin=store.create("admin").token,
        )
    finally:
        store.close()
