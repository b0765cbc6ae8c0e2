"""What analysts write: rules, list entries, and the versioned rule set they form.

A rule is a CEL condition with an action. ``mode="shadow"`` rules are evaluated and
counted but never act, so a draft can be watched on live traffic before it is trusted.
List entries put one value of one entity (a card, a device, an IP, ...) on the block or
the allow list until an expiry, with a reason. Every change makes a new rule-set version;
a decision records the version it was made under.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shopsentry.events.schema import Purchase

Action = Literal["block", "review", "allow"]
Mode = Literal["active", "shadow"]
ListName = Literal["block", "allow"]
RuleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]

# Entity → the purchase field that names it. The entity-risk work adds store and terminal.
ENTITY_FIELDS: dict[str, str] = {
    "user": "user_id",
    "card": "card_fingerprint",
    "device": "device_fingerprint",
    "ip": "ip_fingerprint",
    "shipping_address": "shipping_address_hash",
    "store": "store_id",
    "terminal": "terminal_id",
}
Entity = Literal["user", "card", "device", "ip", "shipping_address", "store", "terminal"]


def purchase_entities() -> dict[str, str]:
    """The entities this build's purchase schema carries (a field the schema lacks is
    left out rather than matched against nothing)."""
    fields = Purchase.model_fields
    return {entity: field for entity, field in ENTITY_FIELDS.items() if field in fields}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    expression: Annotated[str, Field(min_length=1, max_length=4000)]
    action: Action
    priority: int = Field(default=100, ge=0, le=1_000_000)
    mode: Mode = "shadow"
    enabled: bool = True
    owner: Annotated[str, Field(max_length=128)] = ""
    note: Annotated[str, Field(max_length=2000)] = ""

    @property
    def acting(self) -> bool:
        return self.enabled and self.mode == "active"


class ListEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    list: ListName
    entity: Entity
    value: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=500)] = ""
    expires_at: AwareDatetime | None = None
    added_by: Annotated[str, Field(max_length=128)] = ""

    @property
    def key(self) -> str:
        return f"{self.list}:{self.entity}:{self.value}"

    def live_at(self, at: datetime) -> bool:
        return self.expires_at is None or self.expires_at > at


class RuleSet(BaseModel):
    """Everything the detector applies, at one version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=0, ge=0)
    rules: tuple[Rule, ...] = ()
    entries: tuple[ListEntry, ...] = ()

    def with_rule(self, rule: Rule) -> RuleSet:
        kept = tuple(r for r in self.rules if r.name != rule.name)
        return self.model_copy(update={"version": self.version + 1, "rules": (*kept, rule)})

    def without_rule(self, name: str) -> RuleSet:
        kept = tuple(r for r in self.rules if r.name != name)
        return self.model_copy(update={"version": self.version + 1, "rules": kept})

    def with_entries(self, entries: Iterable[ListEntry]) -> RuleSet:
        merged = {e.key: e for e in self.entries}
        merged.update((e.key, e) for e in entries)
        return self.model_copy(
            update={"version": self.version + 1, "entries": tuple(merged.values())}
        )

    def without_entry(self, key: str) -> RuleSet:
        kept = tuple(e for e in self.entries if e.key != key)
        return self.model_copy(update={"version": self.version + 1, "entries": kept})

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def utcnow() -> datetime:
    return datetime.now(UTC)
