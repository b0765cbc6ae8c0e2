"""Per-rule hit counts for the rules page: which rules fired on which decisions.

The source is the decisions themselves: each names the active rules that fired
(``rules_fired``) and the shadow ones (``shadow_rules_fired``). The read model keeps one
row per (decision, rule) beside the decision, in the same transaction, so a count is
exactly the decisions the API has read, a replay counts nothing twice, and the rows go
with their decisions when the read model is pruned to the log's retention. The
Prometheus counter ``shopsentry_rule_hits_total`` counts the same hits per worker
process (and restarts from zero with it); this count is over the stored decisions of a
time window, which is what an analyst comparing rules wants.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shopsentry.events.schema import Decision, FraudAlert

SCHEMA = """
create table if not exists rule_hits (
    event_id text not null, rule text not null, mode text not null, decided_ms integer not null,
    primary key (event_id, rule)
);
create index if not exists rule_hits_time on rule_hits (decided_ms, rule);
"""


@dataclass(frozen=True)
class RuleHits:
    active: int = 0  # decisions on which the rule fired while active
    shadow: int = 0  # ... while in shadow

    @property
    def total(self) -> int:
        return self.active + self.shadow


def put(db: sqlite3.Connection, decision: Decision, decided_ms: int) -> None:
    """The decision's hits (inside the transaction that stores the decision)."""
    event = decision.event_id
    rows = [(event, rule, "active", decided_ms) for rule in decision.rules_fired]
    rows += [(event, rule, "shadow", decided_ms) for rule in decision.shadow_rules_fired]
    if rows:
        db.executemany("insert or ignore into rule_hits values (?, ?, ?, ?)", rows)


# What decided an alert, kept on the alert row (alerts outlive the decisions table): the
# rule-set version, the active rules and list entries that fired, the shadow rules that
# would have, and the model's own band. One JSON column, added to older read models.
ALERT_COLUMN = "decided_by"
_ALERT_FIELDS = ("rule_set_version", "rules_fired", "shadow_rules_fired", "list_hits", "model_band")


def add_alert_column(db: sqlite3.Connection) -> None:
    """Give an alerts table made before the column its column (existing rows: ``{}``)."""
    columns = {row[1] for row in db.execute("pragma table_info(alerts)")}
    if ALERT_COLUMN not in columns:
        db.execute(f"alter table alerts add column {ALERT_COLUMN} text not null default '{{}}'")


def of_alert(alert: FraudAlert) -> str:
    return json.dumps({name: getattr(alert, name) for name in _ALERT_FIELDS})


def from_alert_column(text: str) -> dict[str, Any]:
    """The fields :func:`of_alert` stored (missing ones at the API's defaults)."""
    stored = json.loads(text)
    return {name: stored[name] for name in _ALERT_FIELDS if stored.get(name) is not None}


def prune(db: sqlite3.Connection, cutoff_ms: int) -> int:
    return db.execute("delete from rule_hits where decided_ms < ?", (cutoff_ms,)).rowcount


Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def counts(query: Query, since_ms: int) -> dict[str, RuleHits]:
    """Hits per rule name over the decisions made since ``since_ms``."""
    found: dict[str, dict[str, int]] = {}
    for rule, mode, n in query(
        "select rule, mode, count(*) from rule_hits where decided_ms >= ? group by rule, mode",
        [since_ms],
    ):
        found.setdefault(rule, {})[mode] = int(n)
    return {rule: RuleHits(m.get("active", 0), m.get("shadow", 0)) for rule, m in found.items()}
