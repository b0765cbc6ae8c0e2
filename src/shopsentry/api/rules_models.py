"""Request and response bodies of `/v1/rules` and `/v1/lists` (the wire contract; the
rule-set model the detector applies lives in :mod:`shopsentry.rules.model`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shopsentry.rules.model import Action, Entity, ListName, Mode, RuleName


class RuleRequest(BaseModel):
    """A rule to create or replace (by name). Analysts save ``shadow`` only."""

    model_config = ConfigDict(extra="forbid")

    name: RuleName
    expression: Annotated[str, Field(min_length=1, max_length=4000, description="A CEL condition.")]
    action: Action
    priority: int = Field(default=100, ge=0, le=1_000_000, description="Lower runs first.")
    mode: Mode = "shadow"
    note: Annotated[str, Field(max_length=2000)] = ""


class RuleView(BaseModel):
    name: str
    expression: str
    action: Action
    priority: int
    mode: Mode
    enabled: bool
    owner: str
    note: str


class RuleHitsView(BaseModel):
    active: int = Field(description="Decisions the rule fired on while active.")
    shadow: int = Field(description="Decisions the rule fired on while in shadow.")
    total: int


class ListedRule(RuleView):
    hits: RuleHitsView = Field(description="Over the stored decisions since ``hits_since``.")


class RuleSetView(BaseModel):
    version: int = Field(description="The rule-set version (changes applied so far).")
    hits_since: datetime = Field(
        description="Hit counts are over the decisions made since then (the API's read"
        " model of the decisions topic)."
    )
    rules: list[ListedRule]


class RuleChanged(BaseModel):
    version: int = Field(description="The rule-set version that includes this change.")
    rule: RuleView


class AuditView(BaseModel):
    action: str
    changed_by: str
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    version: int | None


class RuleHistory(BaseModel):
    name: str
    changes: list[AuditView] = Field(description="Oldest first.")


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: Annotated[str, Field(max_length=4000)]


class CheckResult(BaseModel):
    ok: bool
    line: int | None = None
    column: int | None = None
    reason: str | None = None


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: Annotated[str, Field(min_length=1, max_length=4000)]
    action: Action = "review"
    since: date | None = Field(default=None, description="First day (inclusive).")
    until: date | None = Field(default=None, description="Day after the last.")


class Tally(BaseModel):
    purchases: int
    hits: int
    fraud_caught: int
    fraud_known: int
    extra_reviews: int
    overlap_with_model: int
    amount_saved: float
    amount_blocked_wrongly: float
    errors: int
    precision: float | None
    recall: float | None


class DayTally(Tally):
    day: date


class BacktestResult(BaseModel):
    expression: str
    action: Action
    since: date | None
    until: date | None
    as_of: datetime
    total: Tally
    days: list[DayTally]


class ListEntryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list: ListName
    entity: Entity
    value: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=500)] = ""
    expires_at: AwareDatetime | None = Field(default=None, description="Never, when left out.")


class ListEntryView(BaseModel):
    list: ListName
    entity: Entity
    value: str
    reason: str
    expires_at: datetime | None
    added_by: str


class ListsView(BaseModel):
    version: int
    entries: list[ListEntryView] = Field(description="The live entries.")


class EntryChanged(BaseModel):
    version: int
    entry: ListEntryView


class RejectedRow(BaseModel):
    row: int = Field(description="1-based; the header is row 1.")
    reason: str


class ImportResult(BaseModel):
    version: int
    imported: int
    rejected: list[RejectedRow]
