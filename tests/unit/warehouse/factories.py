"""Small, deterministic event sets built from the real schemas (shared by warehouse,
pipeline and DAG tests). Every event is encoded with ``shopsentry.events.codec.encode``
so the warehouse sees exactly what the detector and simulator produce."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shopsentry.events.codec import encode
from shopsentry.events.schema import (
    AddToCart,
    Decision,
    FraudAlert,
    Label,
    Login,
    PageView,
    Purchase,
    Review,
    Search,
    band_for,
    severity_for,
)

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@dataclass
class EventSet:
    """Encoded events per topic, in production order, plus the truth used to build them."""

    by_topic: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    purchases: list[Purchase] = field(default_factory=list)
    fraud_ids: set[str] = field(default_factory=set)
    alerted_ids: set[str] = field(default_factory=set)

    def add(self, topic: str, key: str, event: object) -> None:
        self.by_topic.setdefault(topic, []).append((key.encode(), encode(event)))  # type: ignore[arg-type]

    def count(self, topic: str) -> int:
        return len(self.by_topic.get(topic, []))


def make_events(
    *, users: int = 12, purchases: int = 60, start: datetime = START, days: int = 2, seed: int = 7
) -> EventSet:
    rng = random.Random(seed)
    out = EventSet()
    span = days * 24 * 3600
    times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in range(purchases))
    for i, at in enumerate(times):
        user = f"u{i % users:03d}"
        source = rng.choice(["web", "mobile", "pos"])
        eid = f"p{i:05d}"
        for j, cls in enumerate((PageView, Search, AddToCart)):
            kw = (
                {"page": "/p"}
                if cls is PageView
                else {"query": "shoes"}
                if cls is Search
                else {"product_id": "sku1", "quantity": 1, "price": 10.0}
            )
            out.add(
                "user-behavior",
                user,
                cls(
                    event_id=f"b{i:05d}-{j}",
                    source=source,
                    user_id=user,
                    occurred_at=at - timedelta(minutes=5 - j),
                    **kw,
                ),
            )
        if i % 10 == 0:
            out.add(
                "user-behavior",
                user,
                Login(
                    event_id=f"l{i:05d}",
                    source=source,
                    user_id=user,
                    occurred_at=at - timedelta(minutes=6),
                ),
            )
        is_fraud = i % 7 == 3
        p = Purchase(
            event_id=eid,
            source=source,
            user_id=user,
            occurred_at=at,
            order_id=f"o{i:05d}",
            amount=round(rng.uniform(5, 500) * (4 if is_fraud else 1), 2),
            item_count=rng.randint(1, 5),
            payment_method=rng.choice(["card", "paypal", "apple_pay"]),
            country=rng.choice(["US", "DE", "FR"]),
            billing_country="US",
        )
        out.purchases.append(p)
        out.add("purchase-events", user, p)
        prob = 0.9 if is_fraud or i % 11 == 0 else 0.1
        decided = at + timedelta(milliseconds=120 + i)
        band = band_for(prob, 0.7, 0.95)
        out.add(
            "decisions",
            user,
            Decision(
                event_id=eid,
                source=source,
                user_id=user,
                occurred_at=at,
                order_id=p.order_id,
                amount=p.amount,
                currency="USD",
                probability=prob,
                band=band,
                threshold=0.7,
                model_version="1",
                decided_at=decided,
            ),
        )
        if prob >= 0.7:
            out.alerted_ids.add(eid)
            alert = FraudAlert(
                event_id=eid,
                source=source,
                user_id=user,
                occurred_at=at,
                alert_id=f"alert-{eid}",
                order_id=p.order_id,
                amount=p.amount,
                currency="USD",
                probability=prob,
                severity=severity_for(prob, 0.7),
                band=band,
                model_version="1",
                decided_at=decided,
            )
            out.add("fraud-alerts", user, alert)
            out.add(
                "alert-reviews",
                user,
                Review(
                    alert_id=alert.alert_id,
                    event_id=eid,
                    user_id=user,
                    verdict="confirmed_fraud" if is_fraud else "false_positive",
                    reviewed_at=at + timedelta(hours=1),
                ),
            )
        if is_fraud:
            out.fraud_ids.add(eid)
        out.add(
            "fraud-labels",
            user,
            Label(
                event_id=eid,
                source=source,
                user_id=user,
                occurred_at=at,
                order_id=p.order_id,
                is_fraud=is_fraud,
                scenario="card_testing" if is_fraud else None,
                label_source="chargeback",
                known_at=at + timedelta(days=1),
            ),
        )
    return out


BAD_PURCHASES: list[tuple[bytes, bytes]] = [
    (b"u900", b"{not json"),
    (
        b"u901",
        b'{"event_id": "neg1", "event_type": "purchase", "source": "web", "user_id": "u901", '
        b'"occurred_at": "2026-11-20T10:00:00+00:00", "order_id": "oneg1", "amount": -5, '
        b'"item_count": 1, "payment_method": "card", "country": "US", "billing_country": "US"}',
    ),
    (
        b"u902",
        b'{"event_id": "str1", "event_type": "purchase", "source": "web", "user_id": "u902", '
        b'"occurred_at": "2026-11-20T11:00:00+00:00", "order_id": "ostr1", "amount": "lots", '
        b'"item_count": 1, "payment_method": "card", "country": "US", "billing_country": "US"}',
    ),
    (b"u903", b"\xff\xfe not utf8"),
]
