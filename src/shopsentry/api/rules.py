"""`/v1/rules` and `/v1/lists`: analyst rules and block/allow lists over HTTP.

Changes go to the control topic, from which every detector picks them up
(`docs/rules.md`). Analysts write rules in shadow mode; only an admin makes one act.
Every change is audited (who, when, before and after), and a change is answered with the
rule-set version that includes it once this API has read it back, so the caller's next
read sees its own write.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shopsentry.api import rule_hits
from shopsentry.api.deps import AdminDep, AnalystDep, Services, ServicesDep
from shopsentry.api.models import error_responses, field_error
from shopsentry.api.rules_models import (
    AuditView,
    BacktestRequest,
    BacktestResult,
    CheckRequest,
    CheckResult,
    EntryChanged,
    ImportResult,
    ListedRule,
    ListEntryRequest,
    ListEntryView,
    ListsView,
    RejectedRow,
    RuleChanged,
    RuleHistory,
    RuleHitsView,
    RuleRequest,
    RuleSetView,
    RuleView,
)
from shopsentry.api.rules_state import RulesState
from shopsentry.api.security import Principal
from shopsentry.errors import ShopsentryError
from shopsentry.rules.audit import AuditRecord
from shopsentry.rules.control import Change, entry_change, publish, rule_change
from shopsentry.rules.language import RuleSyntaxError
from shopsentry.rules.model import Entity, ListEntry, ListName, Rule, RuleSet

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["rules"])

READ_BACK_TIMEOUT_S = 10.0  # how long a change waits to be read back before a 503
_READ = error_responses(401, 403, 422, 429)
_CHANGE = error_responses(401, 403, 404, 422, 429, 503)  # a change by path, no body
_BODY = error_responses(400, 401, 403, 413, 422, 429)  # a JSON body that is read, not written
_SAVE = error_responses(400, 401, 403, 413, 422, 429, 503)
RuleNamePath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="Rule name")
]


# -- helpers ------------------------------------------------------------------------------
def _state(services: Services) -> RulesState:
    if services.rules is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "rules are not served here")
    return services.rules


def _who(principal: Principal) -> str:
    return principal.name or principal.key_id


def _rule_view(rule: Rule) -> RuleView:
    return RuleView.model_validate(rule.model_dump())


def _entry_view(entry: ListEntry) -> ListEntryView:
    return ListEntryView.model_validate(entry.model_dump())


def _check(expression: str) -> RuleSyntaxError | None:
    from shopsentry.features import FEATURE_NAMES
    from shopsentry.rules.engine import vocabulary
    from shopsentry.rules.language import compile_rule

    try:
        compile_rule(expression, vocabulary(FEATURE_NAMES))
    except RuleSyntaxError as exc:
        return exc
    return None


def _position(exc: RuleSyntaxError) -> str:
    return f"line {exc.line}, column {exc.column}: {exc.reason}"


def _commit(
    services: Services,
    changes: Sequence[Change],
    audits: Sequence[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]],
    who: str,
) -> RuleSet:
    """Publish ``changes``, wait until this API has read them back, audit them.

    ``audits`` are (subject, action, before, after). The caller holds the write lock.
    """
    state = _state(services)
    try:
        with services.produce_lock:
            publish(services.producer, state.topic, changes)
        target = state.end_offset()
    except ShopsentryError as exc:
        logger.warning("rules: publishing %d changes failed: %s", len(changes), exc.one_line())
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the control topic did not acknowledge the change: {exc.message}",
            headers={"Retry-After": "1"},
        ) from None
    rule_set = state.wait_for(target, READ_BACK_TIMEOUT_S)
    at = datetime.now(UTC)
    version = rule_set.version if rule_set is not None else None
    state.audit.record(
        [AuditRecord(subject, action, who, at, before, after, version)
         for subject, action, before, after in audits]
    )  # fmt: skip
    if rule_set is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the change was written but not read back within {READ_BACK_TIMEOUT_S:.0f}s;"
            " it will apply shortly",
            headers={"Retry-After": "1"},
        )
    return rule_set


def _dump(model: Rule | ListEntry | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")


def _save_rule(services: Services, principal: Principal, rule: Rule, action: str) -> RuleChanged:
    state = _state(services)
    who = _who(principal)
    with state.write_lock:
        before = state.current.rule(rule.name)
        audit = (f"rule:{rule.name}", action, _dump(before), _dump(rule))
        rule_set = _commit(services, [rule_change(rule, who)], [audit], who)
    return RuleChanged(version=rule_set.version, rule=_rule_view(rule_set.rule(rule.name) or rule))


def _set_mode(
    services: Services, principal: Principal, name: str, action: str, **update: object
) -> Any:
    state = _state(services)
    current = state.current.rule(name)
    if current is None:
        return field_error("name", f"no rule named {name!r}", status.HTTP_404_NOT_FOUND)
    return _save_rule(services, principal, current.model_copy(update=update), action)


# -- rules --------------------------------------------------------------------------------
@router.get("/rules", response_model=RuleSetView, responses=_READ, summary="The rule set")
def list_rules(
    _: AnalystDep,
    services: ServicesDep,
    hits_hours: Annotated[
        int, Query(ge=1, le=24 * 90, description="Count hits over the last this many hours.")
    ] = 24,
) -> RuleSetView:
    """Every rule (active, shadow and disabled) with the rule-set version, and how many
    decisions each fired on in the window (active and shadow apart)."""
    rule_set = _state(services).current
    since = datetime.now(UTC) - timedelta(hours=hits_hours)
    hits = rule_hits.counts(services.store.query, int(since.timestamp() * 1000))
    rules = sorted(rule_set.rules, key=lambda r: (r.priority, r.name))
    return RuleSetView(
        version=rule_set.version,
        hits_since=since,
        rules=[_listed(r, hits.get(r.name, rule_hits.RuleHits())) for r in rules],
    )


def _listed(rule: Rule, hits: rule_hits.RuleHits) -> ListedRule:
    counted = RuleHitsView(active=hits.active, shadow=hits.shadow, total=hits.total)
    return ListedRule.model_validate({**rule.model_dump(), "hits": counted})


@router.post("/rules", response_model=RuleChanged, responses=_SAVE, summary="Save a rule")
def save_rule(
    principal: AnalystDep, services: ServicesDep, body: RuleRequest
) -> RuleChanged | JSONResponse:
    """Create or replace a rule by name. The expression is checked first (422 with its
    line and column); analysts may save ``shadow`` rules only, admins also ``active``."""
    if body.mode == "active" and principal.role != "admin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the {principal.role} role may save rules in shadow mode only;"
            " an admin activates them",
        )
    error = _check(body.expression)
    if error is not None:
        return field_error("expression", _position(error))
    rule = Rule(**body.model_dump(), owner=_who(principal))
    return _save_rule(services, principal, rule, "save")


@router.post("/rules/check", response_model=CheckResult, responses=_BODY, summary="Check a rule")
def check_rule(_: AnalystDep, body: CheckRequest) -> CheckResult:
    """Parse and type-check an expression (for an editor): where it is wrong, if it is."""
    error = _check(body.expression)
    if error is None:
        return CheckResult(ok=True)
    return CheckResult(ok=False, line=error.line, column=error.column, reason=error.reason)


@router.post(
    "/rules/{name}/activate", response_model=RuleChanged, responses=_CHANGE, summary="Activate"
)
def activate_rule(principal: AdminDep, services: ServicesDep, name: RuleNamePath) -> Any:
    """Let a rule act on live purchases (admin only)."""
    return _set_mode(services, principal, name, "activate", mode="active", enabled=True)


@router.post(
    "/rules/{name}/shadow", response_model=RuleChanged, responses=_CHANGE, summary="Shadow"
)
def shadow_rule(principal: AnalystDep, services: ServicesDep, name: RuleNamePath) -> Any:
    """Evaluate and count a rule without letting it act (re-enables a disabled rule)."""
    return _set_mode(services, principal, name, "shadow", mode="shadow", enabled=True)


@router.post(
    "/rules/{name}/disable", response_model=RuleChanged, responses=_CHANGE, summary="Disable"
)
def disable_rule(principal: AnalystDep, services: ServicesDep, name: RuleNamePath) -> Any:
    """Stop evaluating a rule (it stays in the rule set and its history)."""
    return _set_mode(services, principal, name, "disable", enabled=False)


@router.get(
    "/rules/{name}/history",
    response_model=RuleHistory,
    responses=error_responses(401, 403, 404, 422, 429),
    summary="A rule's changes",
)
def rule_history(
    _: AnalystDep,
    services: ServicesDep,
    name: RuleNamePath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RuleHistory | JSONResponse:
    """Who changed the rule, when, and what it was before and after (oldest first)."""
    state = _state(services)
    records = state.audit.history(f"rule:{name}", limit=limit)
    if not records and state.current.rule(name) is None:
        return field_error("name", f"no rule named {name!r}", status.HTTP_404_NOT_FOUND)
    changes = [
        AuditView(action=r.action, changed_by=r.changed_by, changed_at=r.changed_at,
                  before=r.before, after=r.after, version=r.version)
        for r in records
    ]  # fmt: skip
    return RuleHistory(name=name, changes=changes)


@router.post(
    "/rules/backtest",
    response_model=BacktestResult,
    responses=_SAVE,
    summary="Backtest a draft rule",
)
def backtest_rule(
    _: AnalystDep, services: ServicesDep, body: BacktestRequest
) -> BacktestResult | JSONResponse:
    """What the draft would have done on the warehouse's past purchases, per day and in
    total (503 until the warehouse is built)."""
    import duckdb

    from shopsentry.rules.backtest import backtest
    from shopsentry.warehouse.db import connect

    error = _check(body.expression)
    if error is not None:
        return field_error("expression", _position(error))
    entries = _state(services).current.entries
    try:
        with connect(services.settings.warehouse_path, read_only=True) as conn:
            report = backtest(conn, body.expression, body.action, since=body.since,
                              until=body.until, entries=entries)  # fmt: skip
    except RuleSyntaxError as exc:  # a feature the warehouse's training set lacks
        return field_error("expression", _position(exc))
    except (ShopsentryError, duckdb.Error) as exc:
        message = exc.one_line() if isinstance(exc, ShopsentryError) else str(exc)
        retryable = isinstance(exc, ShopsentryError) and exc.retryable
        logger.warning("backtest failed: %s", message)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the warehouse cannot answer the backtest: {message}",
            headers={"Retry-After": "5"} if retryable else None,
        ) from None
    return BacktestResult.model_validate(report.as_dict())


# -- lists --------------------------------------------------------------------------------
@router.get("/lists", response_model=ListsView, responses=_READ, summary="Live list entries")
def list_entries(_: AnalystDep, services: ServicesDep) -> ListsView:
    """Every block and allow list entry that has not expired."""
    rule_set = _state(services).current
    now = datetime.now(UTC)
    live = sorted((e for e in rule_set.entries if e.live_at(now)), key=lambda e: e.key)
    return ListsView(version=rule_set.version, entries=[_entry_view(e) for e in live])


def _save_entries(
    services: Services, principal: Principal, entries: Sequence[ListEntry], action: str
) -> RuleSet:
    state = _state(services)
    who = _who(principal)
    with state.write_lock:
        if not entries:
            return state.current
        existing = {e.key: e for e in state.current.entries}
        audits = [(f"entry:{e.key}", action, _dump(existing.get(e.key)), _dump(e))
                  for e in entries]  # fmt: skip
        return _commit(services, [entry_change(e, who) for e in entries], audits, who)


@router.post("/lists", response_model=EntryChanged, responses=_SAVE, summary="Add a list entry")
def add_entry(principal: AnalystDep, services: ServicesDep, body: ListEntryRequest) -> EntryChanged:
    """Put one value on the block or allow list (replacing an entry for the same value)."""
    entry = ListEntry(**body.model_dump(), added_by=_who(principal))
    rule_set = _save_entries(services, principal, [entry], "add")
    return EntryChanged(version=rule_set.version, entry=_entry_view(entry))


@router.delete(
    "/lists/{list}/{entity}/{value}",
    response_model=EntryChanged,
    responses=_CHANGE,
    summary="Take a value off a list",
)
def remove_entry(
    principal: AnalystDep,
    services: ServicesDep,
    list_name: Annotated[ListName, Path(alias="list")],
    entity: Entity,
    value: Annotated[str, Path(min_length=1, max_length=128)],
) -> EntryChanged | JSONResponse:
    """Expire the entry now (the history keeps it)."""
    key = f"{list_name}:{entity}:{value}"
    now = datetime.now(UTC)
    entry = next((e for e in _state(services).current.entries if e.key == key), None)
    if entry is None or not entry.live_at(now):
        return field_error("value", f"{value!r} is not on the {list_name} list for {entity}", 404)
    expired = entry.model_copy(update={"expires_at": now})
    rule_set = _save_entries(services, principal, [expired], "remove")
    return EntryChanged(version=rule_set.version, entry=_entry_view(expired))


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "CSV with a header of list,entity,value,reason,expires_at"
        " (list may be left out when the list query parameter names it).",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/lists/import",
    response_model=ImportResult,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503),
    openapi_extra=_CSV_BODY,
    summary="Import list entries from CSV",
)
async def import_entries(
    principal: AnalystDep,
    services: ServicesDep,
    request: Request,
    list_name: Annotated[
        ListName | None, Query(alias="list", description="The list, when the CSV has none.")
    ] = None,
) -> ImportResult | JSONResponse:
    """Bulk import; every row is accounted for: a bad one is returned with its row
    number and the reason, and the good ones are imported."""
    from shopsentry.rules.lists import read_csv

    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return field_error("body", "the CSV is not UTF-8 text", status.HTTP_400_BAD_REQUEST)
    try:
        result = read_csv(text, added_by=_who(principal), default_list=list_name)
    except ValueError as exc:
        return field_error("body", str(exc))
    except csv.Error as exc:
        return field_error("body", f"the CSV cannot be read: {exc}")
    rule_set = await run_in_threadpool(_save_entries, services, principal, result.entries, "import")
    return ImportResult(
        version=rule_set.version,
        imported=len(result.entries),
        rejected=[RejectedRow(row=r.row, reason=r.reason) for r in result.rejected],
    )
