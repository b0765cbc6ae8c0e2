"""The alert store's tables, and how a record becomes a row of them and a row an item.

:class:`~shopsentry.api.read_model.AlertReadModel` owns the file, its transactions and
its queries; this module holds what is only about rows: the schema, the insert of each
kind of event (``insert or ignore`` on its id, so a redelivered record changes nothing),
the per-minute traffic count, and the times the rows keep in milliseconds. Kept apart so
a reader looking for "what is stored for a decision" finds it without the paging and
review code around it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shopsentry.api import rule_hits
from shopsentry.bus.base import Record
from shopsentry.events.schema import Decision, FraudAlert, Purchase

logger = logging.getLogger(__name__)

_PLAUSIBLE_MS = 3_600_000  # an hour: beyond it a timestamp is not live
SCHEMA = """
create table if not exists traffic (
    minute integer not null, topic text not null, count integer not null,
    primary key (minute, topic)
);
create table if not exists purchases (
    event_id text primary key, user_id text not null, order_id text not null,
    amount real not null, currency text not null, source text not null,
    payment_method text, country text, occurred_ms integer not null, raw_json text not null
);
create index if not exists purchases_user on purchases (user_id, occurred_ms);
create table if not exists decisions (
    event_id text primary key, user_id text not null, order_id text not null,
    amount real not null, currency text not null, source text not null,
    probability real not null, band text not null, model_version text not null,
    top_features text not null, latency_ms text not null, e2e_ms real,
    occurred_ms integer not null, decided_ms integer not null
);
create index if not exists decisions_user on decisions (user_id, decided_ms);
create index if not exists decisions_time on decisions (decided_ms);
create table if not exists alerts (
    alert_id text primary key, event_id text not null unique, user_id text not null,
    order_id text not null, amount real not null, currency text not null, source text not null,
    probability real not null, severity text not null, band text not null,
    model_version text not null, top_features text not null,
    occurred_ms integer not null, decided_ms integer not null,
    status text not null default 'open', verdict text, note text, reviewer text, reviewed_ms integer
);
create index if not exists alerts_time on alerts (decided_ms, alert_id);
create index if not exists alerts_user on alerts (user_id, decided_ms);
create index if not exists alerts_status on alerts (status, decided_ms);
"""

ALERT_COLUMNS = (
    "alert_id, event_id, user_id, order_id, amount, currency, source, probability, severity, band,"
    " model_version, top_features, occurred_ms, decided_ms,"
    " status, verdict, note, reviewer, reviewed_ms, " + rule_hits.ALERT_COLUMN
)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def end_to_end_ms(decision: Decision) -> float:
    """Event time to decision. On a live feed that is ``decided_at - occurred_at``; when
    the events carry a replayed or accelerated clock (far from the detector's), fall back
    to the stage times the detector measured (parse, features, score, queue)."""
    for key in ("end_to_end", "e2e", "total"):
        if key in decision.latency_ms:
            return float(decision.latency_ms[key])
    wall = (decision.decided_at - decision.occurred_at).total_seconds() * 1000
    if 0 <= wall <= _PLAUSIBLE_MS:
        return wall
    return float(sum(v for v in decision.latency_ms.values() if 0 <= v <= _PLAUSIBLE_MS))


def traffic_minute(record: Record, now_ms: int) -> int:
    """The minute a record counts in: its log timestamp when that is a plausible recent
    past, else the time the store saw it. A simulator on an accelerated clock stamps
    records ahead of the wall clock (and a replay far behind it); drawn at their own
    times they would smear one real minute over hours of the chart."""
    ts = record.timestamp_ms
    if ts > now_ms or now_ms - ts > _PLAUSIBLE_MS:
        ts = now_ms
    return ts // 60_000


def count_traffic(db: sqlite3.Connection, record: Record, now_ms: int) -> None:
    """One more purchase or behaviour event in its minute of the traffic chart."""
    db.execute(
        "insert into traffic (minute, topic, count) values (?, ?, 1)"
        " on conflict (minute, topic) do update set count = count + 1",
        (traffic_minute(record, now_ms), record.topic),
    )


def put_purchase(db: sqlite3.Connection, p: Purchase, raw: bytes) -> None:
    """The purchase with its original JSON, which the alert detail shows as sent."""
    db.execute(
        "insert or ignore into purchases (event_id, user_id, order_id, amount, currency,"
        " source, payment_method, country, occurred_ms, raw_json)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            p.event_id,
            p.user_id,
            p.order_id,
            p.amount,
            p.currency,
            p.source,
            p.payment_method,
            p.country,
            to_ms(p.occurred_at),
            raw.decode(),
        ),
    )


def put_decision(db: sqlite3.Connection, d: Decision) -> None:
    """The decision with its end-to-end time, and the rules it hit beside it."""
    features = json.dumps([f.model_dump() for f in d.top_features])
    db.execute(
        "insert or ignore into decisions (event_id, user_id, order_id, amount, currency,"
        " source, probability,"
        " band, model_version, top_features, latency_ms, e2e_ms, occurred_ms, decided_ms)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.event_id,
            d.user_id,
            d.order_id,
            d.amount,
            d.currency,
            d.source,
            d.probability,
            d.band,
            d.model_version,
            features,
            json.dumps(d.latency_ms),
            end_to_end_ms(d),
            to_ms(d.occurred_at),
            to_ms(d.decided_at),
        ),
    )
    rule_hits.put(db, d, to_ms(d.decided_at))


def put_alert(db: sqlite3.Connection, a: FraudAlert) -> None:
    """A new alert, open until reviewed; a redelivered one keeps its review."""
    features = json.dumps([f.model_dump() for f in a.top_features])
    db.execute(
        "insert or ignore into alerts (alert_id, event_id, user_id, order_id, amount,"
        " currency, source,"
        " probability, severity, band, model_version, top_features, occurred_ms, decided_ms,"
        f" {rule_hits.ALERT_COLUMN}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a.alert_id,
            a.event_id,
            a.user_id,
            a.order_id,
            a.amount,
            a.currency,
            a.source,
            a.probability,
            a.severity,
            a.band,
            a.model_version,
            features,
            to_ms(a.occurred_at),
            to_ms(a.decided_at),
            rule_hits.of_alert(a),
        ),
    )


def alert_item(row: Sequence[Any]) -> dict[str, Any]:
    """A row of ``ALERT_COLUMNS`` as the API answers it: times as datetimes, JSON parsed."""
    keys = [c.strip() for c in ALERT_COLUMNS.split(",")]
    item = dict(zip(keys, row, strict=True))
    item["top_features"] = json.loads(item["top_features"])
    item["occurred_at"] = from_ms(item.pop("occurred_ms"))
    item["decided_at"] = from_ms(item.pop("decided_ms"))
    item["reviewed_at"] = from_ms(item.pop("reviewed_ms"))
    item.update(rule_hits.from_alert_column(item.pop(rule_hits.ALERT_COLUMN)))
    return item
